"""Writing a file someone may be reading: all of it or none of it, never half; checksums streamed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from heartrisk.files import atomic_write, sha256


def test_a_finished_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.json"
    with atomic_write(target) as partial:
        assert partial.parent == target.parent and partial.name.startswith(".report.json.")
        assert not target.exists()  # the reader sees nothing until the rename
        partial.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "jobs.json"
    target.write_text("old")

    def write_half() -> None:
        with atomic_write(target) as partial:
            partial.write_text("half of the ne")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_half()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["jobs.json"]


def test_two_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    with atomic_write(target) as first, atomic_write(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the last rename wins, whole


def test_sha256_streams_the_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000  # larger than one chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256(path, chunk=4096) == hashlib.sha256(data).hexdigest()
