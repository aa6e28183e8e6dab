"""Batch inference on a real store and a real MLflow: once only, windowed, metrics as scikit-learn says."""

from __future__ import annotations

from datetime import datetime, timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.jobs.infer import EXPERIMENT, InferError, run_infer
from heartrisk.model.registry import NoModelError, champion_model
from heartrisk.runtime.status import collect_status
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group


def kaggle_time(settings: Settings) -> datetime:
    """When the ingested sample's rows happened (ingest backdates them by a day)."""
    times = open_group(settings, HEART).read(columns=["event_time"])["event_time"]
    return times.max().to_pydatetime()


def add_rows(settings: Settings, n: int, source: str, at: datetime, seed: int = 0) -> pd.DataFrame:
    """New `heart` rows (answers borrowed from stored ones) as the daily pipeline would add them."""
    heart = open_group(settings, HEART)
    rows = heart.read().sample(n=n, random_state=seed).reset_index(drop=True)
    if source == "synthetic":  # a copy of a real row is never listed (issue 14): BMI off by a third decimal
        rows["bmi"] = rows["bmi"] + 0.003
    rows["record_id"] = [f"{source}:test:{seed}:{i}" for i in range(n)]
    rows["source"] = source
    rows["event_time"] = pd.Timestamp(at)
    assert heart.insert(rows).inserted == n
    return rows


def runs(settings: Settings) -> pd.DataFrame:
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return pd.DataFrame([{"run_id": r.info.run_id, "status": r.info.status, **r.data.metrics}
                         for r in found])


def test_infer_twice_writes_each_prediction_once(trained: Settings) -> None:
    now = kaggle_time(trained) + timedelta(hours=1)
    first = run_infer(trained, hours=24, now=now)
    assert first.rows_in_window == first.inserted == 6000 and first.already_scored == 0
    second = run_infer(trained, hours=24, now=now + timedelta(minutes=5))
    assert second.inserted == 0 and second.already_scored == 6000
    assert "no new rows" in second.summary
    stored = open_group(trained, HEART_PREDICTIONS).read()
    assert len(stored) == 6000
    assert not stored.duplicated(["record_id", "model_version"]).any()

    # The next day's rows (synthetic and shared by users) are scored, and only they.
    later = now + timedelta(hours=3)
    add_rows(trained, 40, "synthetic", later - timedelta(hours=1), seed=1)
    add_rows(trained, 7, "user", later - timedelta(hours=1), seed=2)
    third = run_infer(trained, hours=24, now=later)
    assert third.inserted == 47 and third.already_scored == 6000
    stored = open_group(trained, HEART_PREDICTIONS).read()
    assert len(stored) == 6047 and not stored.duplicated(["record_id", "model_version"]).any()
    assert stored["source"].value_counts().to_dict() == {"kaggle": 6000, "synthetic": 40, "user": 7}

    logged = runs(trained)
    assert list(logged["rows_scored"]) == [6000, 0, 47]
    status = collect_status(trained)["batch_inference"]
    assert status["by_model_version"] == {"1": 6047}
    assert status["last_run"]["rows_scored"] == 47
    assert set(logged["status"]) == {"FINISHED"}

    # The monitoring files are on disk and in the run; the recent table lists no user row.
    names = {p.name for p in third.artifacts}
    assert {"confusion_all.png", "confusion_window.png", "recent_predictions.csv", "shap_summary.png",
            "performance.png", "drift.csv", "summary.json"} <= names
    assert all(p.is_file() and p.parent == trained.monitoring_dir for p in third.artifacts)
    client = mlflow.MlflowClient(tracking_uri=trained.tracking_uri)
    in_run = {a.path for a in client.list_artifacts(third.run_id, "monitoring")}
    assert "monitoring/shap_summary.png" in in_run
    recent = pd.read_csv(trained.monitoring_dir / "recent_predictions.csv")
    assert "user" not in set(recent["source"]) and "synthetic" in set(recent["source"])
    assert not set(recent.columns) & set(FEATURE_NAMES)


def test_batch_metrics_match_scikit_learn(trained: Settings) -> None:
    now = kaggle_time(trained) + timedelta(hours=1)
    result = run_infer(trained, hours=24, now=now, artifacts=False)
    rows = open_group(trained, HEART).read()
    model = champion_model(trained)
    p = model.predict_proba(rows[list(FEATURE_NAMES)])
    y = rows[LABEL.name].astype(bool)
    said = p >= model.threshold
    expected = {"roc_auc": roc_auc_score(y, p), "precision": precision_score(y, said),
                "recall": recall_score(y, said), "f1": f1_score(y, said)}
    logged = runs(trained).iloc[0]
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-9), name
        assert logged[name] == pytest.approx(value, abs=1e-9), name
    stored = open_group(trained, HEART_PREDICTIONS).read().set_index("record_id").loc[rows["record_id"]]
    assert np.allclose(stored["probability"], p)
    assert (stored["prediction"].to_numpy() == said).all()
    assert (stored["model_version"] == model.version).all()
    assert (stored[LABEL.name].to_numpy() == y.to_numpy()).all()


def test_empty_window_says_so_and_succeeds(trained: Settings) -> None:
    before = kaggle_time(trained) - timedelta(days=2)
    result = run_infer(trained, hours=24, now=before)
    assert result.rows_in_window == result.inserted == 0
    assert result.summary.startswith("no new rows to score in the last 24 h")
    predictions = open_group(trained, HEART_PREDICTIONS)
    assert not predictions.exists() or predictions.count() == 0
    assert list(runs(trained)["rows_scored"]) == [0]
    # A window past the sample holds nothing new either: old rows are not scored late.
    after = run_infer(trained, hours=24, now=kaggle_time(trained) + timedelta(hours=30))
    assert after.rows_in_window == 0 and after.inserted == 0


def test_infer_refuses_what_it_cannot_do(ingested: Settings) -> None:
    with pytest.raises(InferError, match="positive number of hours"):
        run_infer(ingested, hours=0)
    with pytest.raises(NoModelError, match="heartrisk train"):
        run_infer(ingested)


def test_cli_infer(trained: Settings) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["infer", "--hours", "48"])
    assert done.exit_code == 0, done.output
    assert "scored 6,000 new rows" in done.output
    again = runner.invoke(app, ["infer", "--hours", "48"])
    assert again.exit_code == 0 and "no new rows" in again.output
    wrong = runner.invoke(app, ["infer", "--hours", "-3"])
    assert wrong.exit_code == 2 and "positive number of hours" in wrong.output


def test_a_key_stored_twice_in_heart_does_not_stop_infer(trained: Settings) -> None:
    """Two `daily` runs on two machines before issue 15 left `user:…` twice in `heart`; from then on
    every infer failed ("appears more than once in this batch"). Now infer reads each key once and
    `heartrisk doctor --repair` removes the duplicate."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import write_deltalake

    when = kaggle_time(trained) + timedelta(hours=1)
    rows = add_rows(trained, 3, "user", when - timedelta(minutes=30), seed=3)
    heart = open_group(trained, HEART)
    # What the old read-keys-then-append did when two machines merged at once: the rows again.
    stored = heart.read_arrow()
    again = stored.filter(pc.is_in(stored.column("record_id"), value_set=pa.array(list(rows["record_id"]))))
    write_deltalake(heart.uri, again, mode="append")
    assert heart.count() == 6003 + 3
    result = run_infer(trained, hours=24, now=when)
    assert result.inserted == 6003
    stored = open_group(trained, HEART_PREDICTIONS).read()
    assert len(stored) == 6003 and not stored.duplicated(["record_id", "model_version"]).any()
