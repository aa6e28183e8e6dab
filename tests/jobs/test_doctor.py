"""`heartrisk doctor`: finds duplicates, orphan files, an expired lease and a champion without files;
repairs the first three, each table in one commit."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import write_deltalake
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.jobs.doctor import doctor
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.lease import acquire
from heartrisk.store.objects import open_objects


def break_heart(settings: Settings) -> int:
    """Duplicate 5 rows (what two old `daily` runs left), drop an orphan file, leave a lease to expire.
    Returns the table version after the damage."""
    heart = open_group(settings, HEART)
    stored = heart.read_arrow()
    write_deltalake(heart.uri, stored.slice(0, 5), mode="append")
    orphan = Path(heart.uri) / "part-00000-killed-writer.snappy.parquet"
    pq.write_table(stored.slice(10, 3), orphan)
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    acquire(open_objects(settings.store_root), "job-daily", "daily on a crashed host", ttl_s=0.2)
    time.sleep(0.3)
    return heart.version()


def test_doctor_finds_and_repairs(trained: Settings) -> None:
    damaged = break_heart(trained)
    heart = open_group(trained, HEART)
    found = doctor(trained)
    problems = [f.line() for f in found.findings]
    assert any("5 key(s) stored more than once" in p for p in problems), problems
    assert any("1 data file(s)" in p for p in problems), problems
    assert any("lease job-daily" in p and "crashed host" in p for p in problems), problems
    assert not any(f.repaired for f in found.findings) and heart.version() == damaged

    repaired = doctor(trained, repair=True)
    assert not repaired.unresolved, [f.line() for f in repaired.findings]
    assert heart.version() == damaged + 1  # the duplicates went in one commit
    ids = heart.read(columns=["record_id"])["record_id"]
    assert ids.is_unique and len(ids) == 6000
    assert not (Path(heart.uri) / "part-00000-killed-writer.snappy.parquet").exists()
    assert doctor(trained).findings == ()


def test_doctor_reports_a_champion_without_files_and_exits_1(trained: Settings) -> None:
    from heartrisk.model.registry import MODEL_NAME
    from heartrisk.tracking import champion_files

    _, location, files = champion_files(trained, MODEL_NAME)
    assert files > 0
    # The artifacts belong to the session's shared home: moved away for the check, then put back.
    folder = Path(location.removeprefix("file://"))
    aside = folder.with_name(folder.name + ".aside")
    shutil.move(folder, aside)
    try:
        result = CliRunner().invoke(app, ["doctor"], env={"HEARTRISK_HOME": str(trained.home)})
    finally:
        shutil.move(aside, folder)
    assert result.exit_code == 1, result.output
    assert "heart-risk-classifier@champion" in result.output and "artifacts are missing" in result.output
    assert "heartrisk model rollback" in result.output


def test_a_healthy_home_is_healthy(trained: Settings) -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"HEARTRISK_HOME": str(trained.home)})
    assert result.exit_code == 0, result.output
    assert "all healthy" in result.output
