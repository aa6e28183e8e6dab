"""The daily feature pipeline: synthetic rows + pending submissions into `heart`, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.jobs.daily import EXPERIMENT, DailyError, finished_since, pending_submissions, run_daily
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_USER, open_group
from heartrisk.synth.registry import SynthesizerMissingError
from heartrisk.tracking import client as registry_client
from heartrisk.validation import coerce

ANSWERS = {"bmi": 31.2, "smoking": "No", "sex": "Male", "age_category": "70-74", "gen_health": "Fair",
           "physical_health": 10, "stroke": "Yes"}


def daily_runs(settings: Settings) -> pd.DataFrame:
    """The daily job's MLflow runs: status and counts."""
    client = registry_client(settings)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return pd.DataFrame(columns=["status", "synthetic_rows", "user_rows"])
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.job = 'daily'")
    return pd.DataFrame([{"run_id": r.info.run_id, "status": r.info.status, **r.data.metrics} for r in runs])


def heart_rows(settings: Settings) -> pd.DataFrame:
    return open_group(settings, HEART).read()


def assert_one_clean_run(settings: Settings, synthetic: int, submissions: list[str]) -> None:
    """The state one clean run leaves: its synthetic rows once, every submission once, all valid."""
    rows = heart_rows(settings)
    assert rows["record_id"].is_unique
    made = rows[rows["source"] == "synthetic"]
    assert len(made) == synthetic
    assert made["record_id"].str.rsplit(":", n=1).str[0].nunique() == 1  # one run's ids
    users = rows[rows["source"] == "user"]
    assert sorted(users["record_id"]) == sorted(f"user:{s}" for s in submissions)
    assert coerce(made[[*FEATURE_NAMES, LABEL.name]], label="required").problems == []
    assert not made[list(FEATURE_NAMES)].isna().any().any()
    runs = daily_runs(settings)
    assert (runs["status"] == "RUNNING").sum() == 0
    finished = runs[runs["status"] == "FINISHED"]
    assert len(finished) == 1
    assert finished.iloc[0]["synthetic_rows"] == synthetic
    assert finished.iloc[0]["user_rows"] == len(submissions)


def test_daily_twice_adds_synthetic_rows_and_merges_each_submission_once(quick_synthesizer: Settings) -> None:
    settings = quick_synthesizer
    kaggle = open_group(settings, HEART).count()
    ids = [add_submission(settings, ANSWERS, True), add_submission(settings, {"bmi": 22.0}, False)]
    assert sorted(pending_submissions(settings)["submission_id"]) == sorted(ids)

    before = datetime.now(UTC)
    assert not finished_since(settings, before)
    first = run_daily(settings, synthetic=30)
    assert (first.synthetic_rows, first.user_rows, first.pending_submissions) == (30, 2, 2)
    # what the scheduler asks before re-running a daily job it saw cut short
    assert finished_since(settings, before)
    assert not finished_since(settings, datetime.now(UTC) + timedelta(seconds=5))
    assert first.synthesizer_version == "1" and not first.resumed
    assert pending_submissions(settings).empty
    second = run_daily(settings, synthetic=30)
    assert (second.synthetic_rows, second.user_rows) == (30, 0)
    assert second.table_version == first.table_version + 1

    rows = heart_rows(settings)
    assert len(rows) == kaggle + 62 and rows["record_id"].is_unique
    assert (rows["source"] == "synthetic").sum() == 60
    synthetic = rows[rows["source"] == "synthetic"]
    assert coerce(synthetic[[*FEATURE_NAMES, LABEL.name]], label="required").problems == []
    assert set(synthetic["event_time"]) == {pd.Timestamp(first.event_time), pd.Timestamp(second.event_time)}

    merged = rows[rows["source"] == "user"].set_index("record_id")
    stored = open_group(settings, HEART_USER).read().set_index("submission_id")
    for submission_id in ids:  # the answers as given, Unknown still null
        row, given = merged.loc[f"user:{submission_id}"], stored.loc[submission_id]
        for name in (*FEATURE_NAMES, LABEL.name):
            assert (pd.isna(row[name]) and pd.isna(given[name])) or row[name] == given[name], name
    assert pd.isna(merged.loc[f"user:{ids[1]}", "smoking"])

    late = add_submission(settings, {"sex": "Female"}, False)
    third = run_daily(settings, synthetic=0)  # merge only
    assert (third.synthetic_rows, third.user_rows) == (0, 1)
    assert (heart_rows(settings)["record_id"] == f"user:{late}").sum() == 1

    runs = daily_runs(settings)
    assert list(runs["status"]) == ["FINISHED"] * 3
    assert sorted(runs["synthetic_rows"]) == [0, 30, 30] and sorted(runs["user_rows"]) == [0, 1, 2]


def test_daily_compacts_the_submission_table(quick_synthesizer: Settings) -> None:
    for _ in range(4):
        add_submission(quick_synthesizer, ANSWERS, False)
    result = run_daily(quick_synthesizer, synthetic=0)
    assert result.user_rows == 4
    assert result.maintenance["compacted"]["numFilesRemoved"] == 4
    assert len(open_group(quick_synthesizer, HEART_USER).table().file_uris()) == 1


@pytest.mark.parametrize("bad", [-1, 100_001, 10**12, 2.5, "100", True, None])
def test_an_absurd_count_is_refused_and_nothing_is_written(quick_synthesizer: Settings, bad: object) -> None:
    version = open_group(quick_synthesizer, HEART).version()
    add_submission(quick_synthesizer, ANSWERS, True)
    with pytest.raises(DailyError, match="number of synthetic rows"):
        run_daily(quick_synthesizer, synthetic=bad)  # type: ignore[arg-type]
    with pytest.raises(DailyError, match="positive rate"):
        run_daily(quick_synthesizer, synthetic=10, positive_rate=1.5)
    assert open_group(quick_synthesizer, HEART).version() == version
    assert daily_runs(quick_synthesizer).empty


def test_no_synthesizer_explains_how_to_train_and_writes_nothing(ingested: Settings) -> None:
    version = open_group(ingested, HEART).version()
    submission = add_submission(ingested, ANSWERS, False)
    with pytest.raises(SynthesizerMissingError, match="heartrisk synth train"):
        run_daily(ingested, synthetic=10)
    assert open_group(ingested, HEART).version() == version
    assert not (ingested.home / "mlflow.db").exists()
    merged = run_daily(ingested, synthetic=0)  # merging needs no synthesizer
    assert merged.user_rows == 1 and (heart_rows(ingested)["record_id"] == f"user:{submission}").any()


def test_cli_daily(quick_synthesizer: Settings) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["daily", "--synthetic", "12"])
    assert result.exit_code == 0, result.output
    assert "12 synthetic rows" in result.output
    bad = runner.invoke(app, ["daily", "--synthetic", "-5"])
    assert bad.exit_code == 2 and "from 0 to 100,000" in bad.output and "Traceback" not in bad.output
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0 and '"heart-synthesizer"' in status.output


# ------------------------------------------------------------------------------------------ killed runs
CHILD = r"""
import sys, time
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.jobs.daily import run_daily
from heartrisk.store.table import FeatureGroup

stage, marker, home = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
real_insert = FeatureGroup.insert

def pause():
    marker.write_text(stage)
    time.sleep(600)

def insert(self, frame):
    if self.spec.name != "heart":
        return real_insert(self, frame)
    if stage == "before_write":
        pause()
    result = real_insert(self, frame)
    pause()
    return result

FeatureGroup.insert = insert
run_daily(Settings(home=home), synthetic=40)
"""


def kill_daily_at(settings: Settings, stage: str, tmp_path: Path) -> None:
    """Run the daily job in a child process and SIGKILL it just before or just after its write."""
    marker = tmp_path / "paused"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, stage, str(marker), str(settings.home)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(f"the daily child ended early: {child.stdout.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("the daily child never reached its write")
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["before_write", "after_write"])
def test_a_killed_run_then_a_rerun_ends_like_one_clean_run(quick_synthesizer: Settings, tmp_path: Path,
                                                           stage: str) -> None:
    settings = quick_synthesizer
    ids = [add_submission(settings, ANSWERS, True) for _ in range(2)]
    kill_daily_at(settings, stage, tmp_path)

    synthetic_now = (heart_rows(settings)["source"] == "synthetic").sum()
    assert synthetic_now == (40 if stage == "after_write" else 0)  # one commit: all or nothing
    assert list(daily_runs(settings)["status"]) == ["RUNNING"]

    rerun = run_daily(settings, synthetic=40)
    assert rerun.resumed == (stage == "after_write")
    assert len(rerun.abandoned_runs) == (1 if stage == "before_write" else 0)
    assert_one_clean_run(settings, synthetic=40, submissions=ids)
    assert run_daily(settings, synthetic=0).user_rows == 0  # and the submissions stay merged once


def test_without_a_synthesizer_up_merges_only_and_says_so(ingested: Settings) -> None:
    add_submission(ingested, {"bmi": 24.0}, False)
    with pytest.raises(SynthesizerMissingError, match="heartrisk synth train"):
        run_daily(ingested, synthetic=50)
    result = run_daily(ingested, synthetic=50, require_synthesizer=False)
    assert (result.synthetic_rows, result.user_rows, result.no_synthesizer) == (0, 1, True)
    version = result.table_version
    assert result.summary == f"0 synthetic (no synthesizer yet) and 1 user rows (heart v{version})"
