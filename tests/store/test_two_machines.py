"""Two machines sharing one store folder (two homes, so no file lock is shared): inserts of the same
keys and maintenance at the same moment. Before issue 15 the first stored keys twice (read keys, then
append) and the second doubled the table (two compactions both committed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.store.groups import HEART, open_group
from support.race import at_once


def machine(tmp_path: Path, name: str) -> Settings:
    """A home of its own (its own locks) on the store every machine shares."""
    return Settings(home=tmp_path / name, store_uri=str(tmp_path / "shared-store"))


def _insert(home: str, store: str, first: int, count: int) -> int:
    from store.test_store import rows

    group = open_group(Settings(home=Path(home), store_uri=store), HEART)
    return group.insert(rows(range(first, first + count))).inserted


def test_two_machines_inserting_the_same_keys_store_each_once(tmp_path: Path) -> None:
    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    open_group(a, HEART).create()
    for round_ in range(3):  # a race may be won cleanly once; three rounds make it overlap
        first = round_ * 1000
        results = at_once(_insert, [(str(s.home), s.store_uri, first, 300) for s in (a, b)], lead_s=5)
        assert [kind for kind, _ in results] == ["ok", "ok"], results
        assert sum(value for _, value in results) == 300, results
    ids = open_group(a, HEART).read(columns=["record_id"])["record_id"]
    assert len(ids) == 900 and ids.is_unique


def _maintain(home: str, store: str) -> str:
    group = open_group(Settings(home=Path(home), store_uri=store), HEART)
    return str(group.maintain()["compacted"].get("numFilesRemoved"))


def test_two_machines_maintaining_at_once_do_not_double_the_table(tmp_path: Path) -> None:
    from store.test_store import rows

    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    group = open_group(a, HEART)
    for batch in range(20):  # twenty small files, as one-row submissions leave behind
        group.insert(rows(range(batch * 5, batch * 5 + 5)))
    results = at_once(_maintain, [(str(s.home), s.store_uri) for s in (a, b)], lead_s=5)
    assert [kind for kind, _ in results] == ["ok", "ok"], results
    ids = open_group(b, HEART).read(columns=["record_id"])["record_id"]
    assert len(ids) == 100 and ids.is_unique


def _purge_from_the_other_machine(other: Settings, forget: str,
                                  readers: list[str]) -> Callable[..., object]:
    """``DeltaTable.to_pyarrow_dataset`` that lets machine ``other`` forget a row and purge the
    history right after this machine listed its files: the race seen by an attack helper (a `daily`
    on one machine died while `forget` ran on another), made to happen every time."""
    from deltalake import DeltaTable

    listed = DeltaTable.to_pyarrow_dataset

    def listed_then_purged(self: DeltaTable, *args: object, **kwargs: object) -> object:
        dataset = listed(self, *args, **kwargs)
        if not readers:  # the first read only
            readers.append("raced")
            open_group(other, HEART).forget_rows(forget)
        return dataset

    return listed_then_purged


def test_a_read_while_another_machine_purges_the_history_reads_the_new_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake import DeltaTable

    from store.test_store import rows

    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    group = open_group(a, HEART)
    group.insert(rows(range(0, 50)))
    group.insert(rows(range(50, 100)))  # the forgotten row's file is rewritten: the old one goes
    forgotten = group.read(columns=["record_id"])["record_id"].iloc[0]
    raced: list[str] = []
    monkeypatch.setattr(DeltaTable, "to_pyarrow_dataset",
                        _purge_from_the_other_machine(b, f"record_id = '{forgotten}'", raced))
    ids = group.read(columns=["record_id"])["record_id"]
    assert raced == ["raced"]
    assert len(ids) == 99 and forgotten not in set(ids) and ids.is_unique


@pytest.mark.parametrize("reader", ["view", "status"])
def test_a_pinned_read_of_the_latest_version_pins_the_new_one_after_a_purge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    """`train` and `synth train` read through a view that pins the latest version, then reads at it;
    `status` does the same. A purge between the two removed what the pin pointed at."""
    from deltalake import DeltaTable

    from heartrisk.store.view import FeatureView
    from store.test_store import rows

    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    group = open_group(a, HEART)
    group.insert(rows(range(0, 50)))
    group.insert(rows(range(50, 100)))
    forgotten = group.read(columns=["record_id"])["record_id"].iloc[0]
    raced: list[str] = []
    monkeypatch.setattr(DeltaTable, "to_pyarrow_dataset",
                        _purge_from_the_other_machine(b, f"record_id = '{forgotten}'", raced))
    if reader == "view":
        frame, version = FeatureView(group).read()
        assert len(frame) == 99 and forgotten not in set(frame["record_id"])
        assert version == open_group(b, HEART).version()
    else:
        assert group.status()["rows"] == 99
    assert raced == ["raced"]
