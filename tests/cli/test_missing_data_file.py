"""The commands on a store whose ``heart`` lost a data file (deleted by hand, a disk that failed).

An attack helper found: `doctor` exited 2 repeating the read error (whose text says to run `doctor`),
`status` crashed with ``AttributeError`` in the store table, and `daily --synthetic 0` said it succeeded.
What each should do instead: `doctor` reports the missing file and what to do, `status` shows the table
as a line that says it cannot be read, `daily` fails in one line whenever it needs the table's rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, open_group
from support.web import ANSWERS


@pytest.fixture
def lost_file(ingested: Settings) -> str:
    """The ingested sample's ``heart`` with one data file deleted; returns the file's name."""
    lost = sorted(Path(open_group(ingested, HEART).uri).glob("*.parquet"))[0]
    lost.unlink()
    return lost.name


def heartrisk(settings: Settings, *args: str) -> tuple[int, str]:
    """Run the command line on ``settings``' home: exit code and everything printed."""
    result = CliRunner().invoke(app, list(args), env={"HEARTRISK_HOME": str(settings.home)})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def unwrapped(output: str) -> str:
    """The output with the console's line wrapping undone (a finding is one line, however long)."""
    return " ".join(output.split())


def test_doctor_reports_a_missing_data_file_and_what_to_do(ingested: Settings, lost_file: str) -> None:
    code, output = heartrisk(ingested, "doctor")
    assert code == 1, output
    text = unwrapped(output)
    assert f"heart_v1: 1 data file(s) the latest version needs are missing ({lost_file})" in text
    assert "restored from a backup" in text and "error:" not in text


def test_doctor_reports_a_data_file_it_cannot_read(ingested: Settings) -> None:
    """A file that is there but is not Parquet (truncated, overwritten): a finding, not a traceback."""
    damaged = sorted(Path(open_group(ingested, HEART).uri).glob("*.parquet"))[0]
    damaged.write_bytes(b"not parquet")
    code, output = heartrisk(ingested, "doctor")
    assert code == 1, output
    text = unwrapped(output)
    assert "heart_v1: its rows cannot be read" in text and f"restore {damaged.name}" in text


def test_status_shows_an_unreadable_table_as_a_line(ingested: Settings, lost_file: str) -> None:
    code, output = heartrisk(ingested, "status")
    assert code == 0, output
    heart_line = next(line for line in output.splitlines() if "heart_v1" in line)
    assert "cannot be read" in heart_line, output
    assert "heart_user_v1" in output and "not created" in output  # the other tables still shown


def test_daily_that_merges_into_a_broken_heart_fails_in_one_line(ingested: Settings, lost_file: str) -> None:
    add_submission(ingested, ANSWERS, True)
    code, output = heartrisk(ingested, "daily", "--synthetic", "0")
    assert code == 2, output
    assert output.startswith("error: reading heart_v1") and lost_file in output
    assert "heartrisk doctor" in output


def test_daily_with_nothing_to_do_does_not_read_heart(ingested: Settings, lost_file: str) -> None:
    """No submission pending, no synthetic rows asked: nothing to merge, so nothing of heart is read
    (its version comes from the log). Success is the truth; `doctor` is what reports the damage."""
    code, output = heartrisk(ingested, "daily", "--synthetic", "0")
    assert code == 0, output
    assert "0 synthetic rows and 0 user submissions" in output


def test_an_insert_into_a_table_missing_a_file_says_so(ingested: Settings, lost_file: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`daily --synthetic N` writes with one insert: it said "other writers won the race" after 12
    tries when the table had lost a file."""
    from heartrisk.store import table
    from heartrisk.store.table import StoreError
    from store.test_store import rows

    monkeypatch.setattr(table, "COMMIT_ATTEMPTS", 2)  # how often it tries is not what is tested
    synthetic = rows(range(3), source="synthetic")
    synthetic["record_id"] = "synthetic:test:" + synthetic["record_id"]
    with pytest.raises(StoreError) as info:
        open_group(ingested, HEART).insert(synthetic)
    message = str(info.value)
    assert "won the race" not in message and "\n" not in message
    assert lost_file in message and "heartrisk doctor" in message


def test_doctor_reports_a_table_whose_files_it_cannot_even_list(ingested: Settings) -> None:
    """A table that asks for a reader feature delta-rs cannot read (deletion vectors, turned on by
    another engine): neither its rows nor its list of files can be read. Before: the list, asked for
    inside the report of the first failure, failed again and `doctor` ended in a traceback."""
    from deltalake import DeltaTable
    from deltalake.table import TableFeatures

    DeltaTable(open_group(ingested, HEART).uri).alter.add_feature(
        TableFeatures.DeletionVectors, allow_protocol_versions_increase=True)
    code, output = heartrisk(ingested, "doctor")
    assert code == 1, output
    text = unwrapped(output)
    assert "heart_v1: its rows cannot be read (DeltaProtocolError" in text
    assert "restore the damaged file from a backup" in text
