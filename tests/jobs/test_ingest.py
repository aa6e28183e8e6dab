"""`heartrisk ingest`: the dev file in and back, exactly once, and bad files refused whole."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, KAGGLE_COLUMNS
from heartrisk.jobs.ingest import ingest
from heartrisk.sources.kaggle import DatasetError
from heartrisk.store.groups import HEART, open_group
from heartrisk.validation import ValidationError

DESIGN_COLUMNS = ["record_id", "event_time", "source", *FEATURE_NAMES, "heart_disease"]


def test_dev_file_in_and_back_once(settings: Settings, dev_csv: Path, dev_frame: pd.DataFrame) -> None:
    first = ingest(settings, dev_csv)
    assert (first.rows_in_file, first.inserted) == (287_693, 287_693)
    assert round(first.positive_rate * 100, 2) == 8.55
    second = ingest(settings, dev_csv)
    assert (second.inserted, second.skipped) == (0, 287_693)

    group = open_group(settings, HEART)
    assert group.version() == first.table_version
    via_pandas = group.read().sort_values("record_id", key=_line_of).reset_index(drop=True)
    via_polars = pl.read_delta(group.uri).to_pandas().sort_values("record_id", key=_line_of)
    assert list(via_polars.columns) == DESIGN_COLUMNS
    pd.testing.assert_frame_equal(via_pandas, via_polars.reset_index(drop=True), check_dtype=False)

    assert len(via_pandas) == 287_693 and via_pandas["record_id"].is_unique
    assert (via_pandas["source"] == "kaggle").all()
    assert round(via_pandas["heart_disease"].mean() * 100, 2) == 8.55
    # the stored values are the file's values, line by line
    assert (via_pandas["bmi"].to_numpy() == dev_frame["BMI"].astype(float).to_numpy()).all()
    assert (via_pandas["gen_health"].to_numpy() == dev_frame["GenHealth"].to_numpy()).all()


def _line_of(ids: pd.Series) -> pd.Series:
    return ids.str.rsplit(":", n=1).str[-1].astype(int)


def test_backfill_event_time_is_a_day_before(ingested: Settings) -> None:
    times = open_group(ingested, HEART).read(columns=["event_time"])["event_time"]
    age = pd.Timestamp.now(tz="UTC") - times
    assert ((age > pd.Timedelta(hours=23)) & (age < pd.Timedelta(hours=25))).all()


GOOD_LINE = "No,16.6,Yes,No,No,3.0,30.0,No,Female,55-59,White,Yes,Yes,Very good,5.0,Yes,No,Yes"
HEADER = ",".join(KAGGLE_COLUMNS)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("lines", "message"), [
    ([HEADER, GOOD_LINE, GOOD_LINE.replace("16.6", "abc")], r"line 3, column BMI: 'abc' is not a number"),
    ([HEADER, GOOD_LINE.replace("16.6", "-4")], r"line 2, column BMI: '-4' is out of range"),
    ([HEADER, GOOD_LINE.replace("Female", "Woman")], r"line 2, column Sex: 'Woman' is not allowed"),
    ([HEADER, GOOD_LINE.replace("3.0", "3.5", 1)], r"line 2, column PhysicalHealth: '3.5' is not a whole"),
    ([HEADER, GOOD_LINE.rsplit(",", 1)[0]], r"line 2: 17 fields, expected 18"),
    ([HEADER.replace(",BMI", ""), GOOD_LINE], r"line 1 \(header\): missing column\(s\) BMI"),
    ([HEADER + ",Colour", GOOD_LINE + ",red"], r"unexpected column\(s\) 'Colour'"),
    ([HEADER], r"header but no rows"),
    ([""], r"the file is empty"),
    ([HEADER, GOOD_LINE, GOOD_LINE + ",extra,fields"], r"not a well-formed CSV file: line 3: 20 fields"),
])
def test_bad_files_are_refused_whole(settings: Settings, tmp_path: Path, lines: list[str],
                                     message: str) -> None:
    path = write(tmp_path, "bad.csv", "\n".join(lines) + "\n")
    with pytest.raises((DatasetError, ValidationError), match=message) as caught:
        ingest(settings, path)
    assert str(path) in str(caught.value)
    assert not open_group(settings, HEART).exists()


def test_a_bad_file_after_a_good_one_does_not_move_the_version(ingested: Settings,
                                                               tmp_path: Path) -> None:
    group = open_group(ingested, HEART)
    version, count = group.version(), group.count()
    bad = write(tmp_path, "bad.csv", "\n".join([HEADER, GOOD_LINE, GOOD_LINE.replace("Yes", "Si", 1)]))
    with pytest.raises(ValidationError):
        ingest(ingested, bad)
    assert (group.version(), group.count()) == (version, count)


def test_truncated_gzip_and_bad_zip(settings: Settings, tmp_path: Path, sample_csv: Path) -> None:
    data = gzip.compress(sample_csv.read_bytes())
    truncated = tmp_path / "heart.csv.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="damaged or truncated"):
        ingest(settings, truncated)
    not_zip = tmp_path / "heart.zip"
    not_zip.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DatasetError, match="not a valid zip"):
        ingest(settings, not_zip)
    assert not open_group(settings, HEART).exists()


def test_zip_and_gzip_inputs(settings: Settings, tmp_path: Path, sample_csv: Path) -> None:
    archive = tmp_path / "heart.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(sample_csv, "2020/heart_2020_cleaned.csv")
    assert ingest(settings, archive).inserted == 6000
    gz = tmp_path / "heart.csv.gz"
    gz.write_bytes(gzip.compress(sample_csv.read_bytes()))
    # a different file (another hash) is a different source: its rows get their own ids
    assert ingest(settings, gz).inserted == 6000


def test_offline_download_explains_heartrisk_csv(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # a closed port: fails at once, offline
    with pytest.raises(DatasetError, match="HEARTRISK_CSV="):
        ingest(settings)


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTRISK_HOME": str(home)}
    env.pop("HEARTRISK_CSV", None)
    return subprocess.run([sys.executable, "-m", "heartrisk", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_ingest_status_and_a_bad_line(tmp_path: Path, sample_csv: Path) -> None:
    home = tmp_path / "home"
    done = run_cli(home, "ingest", "--csv", str(sample_csv))
    assert done.returncode == 0, done.stderr
    assert "6,000 new" in done.stdout
    status = run_cli(home, "status", "--json")
    assert '"rows": 6000' in status.stdout
    bad = write(tmp_path, "bad.csv", "\n".join([HEADER, GOOD_LINE, GOOD_LINE.replace("16.6", "x")]))
    failed = run_cli(home, "ingest", "--csv", str(bad))
    assert failed.returncode == 2
    assert "line 3, column BMI: 'x' is not a number" in failed.stderr
    assert "Traceback" not in failed.stderr
