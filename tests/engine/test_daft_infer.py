"""Batch inference on Daft's native runner matches the local engine row for row, on a real store."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake

from heartrisk.config import ConfigError, Settings
from heartrisk.jobs.infer import run_infer
from heartrisk.monitoring.snapshot import ReportSettings, build_snapshot
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
from support.heart_rows import add_rows, kaggle_time

pytest.importorskip("daft")


def copy_home(settings: Settings, where: Path, **changes: object) -> Settings:
    """Another machine's copy of ``settings``' home (same models), with other settings."""
    shutil.copytree(settings.home, where)
    return settings.model_copy(update={"home": where, **changes})


def stored(settings: Settings) -> pd.DataFrame:
    """heart_predictions in a fixed order, for comparing two homes."""
    frame = open_group(settings, HEART_PREDICTIONS).read()
    return frame.sort_values(["record_id", "model_version"]).reset_index(drop=True)


def test_daft_scores_like_the_local_engine(trained: Settings, tmp_path: Path) -> None:
    now = kaggle_time(trained) + timedelta(hours=1)
    # One record stored twice in heart, as a race before issue 15 left some: scored once by both.
    heart = open_group(trained, HEART)
    write_deltalake(heart.uri, heart.read_arrow().slice(0, 1), mode="append")
    # Small buckets: the ids are sorted out in several hash buckets, each against its own scored ids.
    daft_home = copy_home(trained, tmp_path / "daft", engine="daft", engine_batch_rows=1_000,
                          engine_bucket_rows=2_000)

    local = run_infer(trained, hours=24, now=now, artifacts=False)
    engine = run_infer(daft_home, hours=24, now=now, artifacts=False)
    assert engine.engine == "daft" and local.engine == "local"
    assert engine.inserted == local.inserted == engine.rows_in_window == local.rows_in_window == 6000
    assert engine.metrics == pytest.approx(local.metrics, nan_ok=True)
    pd.testing.assert_frame_equal(stored(daft_home), stored(trained))
    versions = {open_group(home, HEART_PREDICTIONS).version() for home in (daft_home, trained)}
    assert len(versions) == 1  # one commit each

    # The next rows: only they are scored, a re-run stores nothing and commits nothing.
    later = now + timedelta(hours=3)
    for home in (trained, daft_home):
        add_rows(home, 300, "synthetic", later - timedelta(hours=1), seed=3)
    local, engine = (run_infer(h, hours=24, now=later, artifacts=False) for h in (trained, daft_home))
    assert (engine.inserted, engine.already_scored) == (local.inserted, local.already_scored) == (300, 6000)
    version = open_group(daft_home, HEART_PREDICTIONS).version()
    again = run_infer(daft_home, hours=24, now=later, artifacts=False)
    assert again.inserted == 0 and open_group(daft_home, HEART_PREDICTIONS).version() == version
    pd.testing.assert_frame_equal(stored(daft_home), stored(trained))

    # The monitoring report from Daft's aggregate of heart_predictions says what the local one says.
    config = ReportSettings(hours=2)
    local_report, engine_report = (build_snapshot(h, config, now=later) for h in (trained, daft_home))
    assert engine_report.predictions == local_report.predictions
    assert engine_report.predictions["window_rows"] == 300
    assert engine_report.metrics_all == pytest.approx(local_report.metrics_all)
    assert engine_report.metrics_window == pytest.approx(local_report.metrics_window)
    assert engine_report.confusion_all == local_report.confusion_all
    pd.testing.assert_frame_equal(engine_report.daily, local_report.daily)
    # The latest rows: the same times (rows of one time are tied, so which of them is listed may differ),
    # each a stored prediction, never a user's row.
    times = ["event_time", "predicted_at"]
    pd.testing.assert_frame_equal(engine_report.recent[times], local_report.recent[times])
    listed = engine_report.recent.merge(stored(trained), on="record_id", suffixes=("", "_stored"))
    assert len(listed) == len(engine_report.recent) == 25
    assert (listed["probability"] == listed["probability_stored"]).all()
    assert (engine_report.recent["source"] != "user").all()
    # The same drift; a float summed in another row order may differ in its last bit.
    engine_drift, local_drift = engine_report.drift.to_dict(), local_report.drift.to_dict()
    assert engine_drift.pop("features") == [_approx_floats(f) for f in local_drift.pop("features")]
    assert engine_drift == local_drift


def test_no_step_of_the_daft_engine_holds_the_whole_window(trained: Settings, tmp_path: Path) -> None:
    """The window is 6,000 rows; with buckets of 1,000 ids and batches of 1,000 rows no plan step
    holds more than a bucket's ids (hash buckets vary a little) and the driver no more than a batch.
    A dedup or anti-join over the whole window would hold 6,000."""
    now = kaggle_time(trained) + timedelta(hours=1)
    heart = open_group(trained, HEART)
    write_deltalake(heart.uri, heart.read_arrow().slice(0, 1), mode="append")  # a record id twice
    home = copy_home(trained, tmp_path / "daft", engine="daft", engine_batch_rows=1_000,
                     engine_bucket_rows=1_000)
    first = run_infer(home, hours=24, now=now, artifacts=False)
    assert first.inserted == first.rows_in_window == 6000
    assert 800 <= first.steps["largest_bucket_ids"] <= 1_300
    assert first.steps["buckets"] >= 6
    assert 0 < first.steps["largest_batch_rows"] <= 1_000
    assert open_group(home, HEART_PREDICTIONS).duplicate_keys().num_rows == 0

    later = now + timedelta(hours=3)
    add_rows(home, 300, "synthetic", later - timedelta(hours=1), seed=3)
    again = run_infer(home, hours=24, now=later, artifacts=False)
    assert (again.inserted, again.already_scored, again.rows_in_window) == (300, 6000, 6300)
    assert again.steps["largest_bucket_ids"] <= 1_300
    nothing = run_infer(home, hours=24, now=later, artifacts=False)
    assert nothing.inserted == 0 and nothing.steps["largest_batch_rows"] == 0  # nothing read to score


def test_the_daft_engine_writes_the_monitoring_report(trained: Settings, tmp_path: Path) -> None:
    now = kaggle_time(trained) + timedelta(hours=1)
    daft_home = copy_home(trained, tmp_path / "daft", engine="daft")
    result = run_infer(daft_home, hours=24, now=now)
    assert result.inserted == 6000 and result.artifacts and result.run_id
    assert "roc_auc" in result.metrics and result.drift["window"]["rows"] == 6000


def test_a_ray_address_means_the_daft_engine_and_local_cannot_have_one() -> None:
    assert Settings(ray_address="ray://head:10001").batch_engine == "daft"
    assert Settings().batch_engine == "local"
    with pytest.raises(ConfigError, match="HEARTRISK_ENGINE is local"):
        Settings.from_env({"HEARTRISK_ENGINE": "local", "HEARTRISK_RAY_ADDRESS": "auto"})
    with pytest.raises(ConfigError, match="HEARTRISK_ENGINE"):
        Settings.from_env({"HEARTRISK_ENGINE": "spark"})


def _approx_floats(row: dict[str, object]) -> dict[str, object]:
    """One drift row with every float compared to 1e-9 relative, everything else exactly."""
    return {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in row.items()}
