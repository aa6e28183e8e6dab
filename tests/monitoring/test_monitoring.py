"""Monitoring computations: metrics against scikit-learn, daily performance, drift, pooled windows."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.monitoring.drift import (
    DriftSettings,
    column_drift,
    drift_report,
    js_distance,
    normed_wasserstein,
    pooled_window,
    psi,
)
from heartrisk.monitoring.metrics import (
    classification_metrics,
    confusion,
    daily_performance,
    recent_predictions,
    volume_by_day,
)
from heartrisk.monitoring.snapshot import value_codes
from heartrisk.sources.kaggle import read_kaggle_csv

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def predictions(n: int = 3000, days: int = 3, seed: int = 0) -> pd.DataFrame:
    """A heart_predictions-shaped frame: informative probabilities, some unknown truths."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.1
    probability = np.clip(rng.normal(0.1 + 0.3 * truth, 0.12), 0.001, 0.999)
    label = pd.array(truth, dtype="boolean")
    label[rng.random(n) < 0.05] = pd.NA
    return pd.DataFrame({
        "record_id": [f"r{i}" for i in range(n)],
        "event_time": [NOW - timedelta(days=int(d), hours=1) for d in rng.integers(0, days, n)],
        "predicted_at": NOW,
        "model_version": "1",
        "probability": probability,
        "prediction": probability >= 0.2,
        "threshold": 0.2,
        LABEL.name: label,
        "source": rng.choice(["kaggle", "synthetic", "user"], n, p=[0.5, 0.4, 0.1]),
    })


def test_classification_metrics_match_scikit_learn_on_labelled_rows() -> None:
    frame = predictions()
    metrics = classification_metrics(frame)
    known = frame[frame[LABEL.name].notna()]
    y = known[LABEL.name].astype(bool)
    assert metrics["rows"] == len(known) < len(frame)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, known["probability"]))
    assert metrics["precision"] == pytest.approx(precision_score(y, known["prediction"]))
    assert metrics["recall"] == pytest.approx(recall_score(y, known["prediction"]))
    assert metrics["f1"] == pytest.approx(f1_score(y, known["prediction"]))
    assert 0.5 < metrics["roc_auc"] < 1
    matrix = confusion(frame)
    assert matrix.tolist() == confusion_matrix(y, known["prediction"], labels=[False, True]).tolist()
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == tuple(matrix.ravel())


def test_metrics_of_nothing_labelled_and_of_one_class() -> None:
    frame = predictions(200)
    assert classification_metrics(frame.iloc[:0]) == {}
    assert confusion(frame.iloc[:0]).tolist() == [[0, 0], [0, 0]]
    negatives = frame[frame[LABEL.name] == False]  # noqa: E712 (nullable boolean)
    metrics = classification_metrics(negatives)
    assert math.isnan(metrics["roc_auc"])
    assert metrics["recall"] == 0.0


def test_daily_performance_splits_by_day_and_counts_sources() -> None:
    frame = predictions(days=3)
    daily = daily_performance(frame)
    assert len(daily) == 3
    assert daily["rows"].sum() == len(frame)
    assert (daily[["rows_kaggle", "rows_synthetic", "rows_user"]].sum(axis=1) == daily["rows"]).all()
    day = daily.iloc[1]
    rows = frame[pd.to_datetime(frame["event_time"], utc=True).dt.floor("D") == day["day"]]
    rows = rows[rows[LABEL.name].notna()]
    assert day["roc_auc"] == pytest.approx(roc_auc_score(rows[LABEL.name].astype(bool), rows["probability"]))
    assert day["f1"] == pytest.approx(f1_score(rows[LABEL.name].astype(bool), rows["prediction"]))
    volume = volume_by_day(frame)
    assert volume.to_numpy().sum() == len(frame)
    assert set(volume.columns) == {"kaggle", "synthetic", "user"}


def test_recent_predictions_never_list_user_rows() -> None:
    frame = predictions(500)
    recent = recent_predictions(frame, rows=1000)
    assert len(recent) == (frame["source"] != "user").sum()
    assert "user" not in set(recent["source"])
    assert not set(recent.columns) & set(FEATURE_NAMES)


def test_distances_behave_at_their_extremes() -> None:
    values = ("No", "Yes")
    same = pd.Series(["No", "Yes", None, "No"])
    assert js_distance(same, same, values) == pytest.approx(0.0)
    assert js_distance(pd.Series(["No"] * 10), pd.Series(["Yes"] * 10), values) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 2, 5000)
    assert normed_wasserstein(ref, ref) == pytest.approx(0.0)
    assert normed_wasserstein(ref, ref + 2) == pytest.approx(1.0, rel=0.05)
    assert psi(ref, rng.normal(0, 2, 5000)) < 0.02
    assert psi(ref, ref + 2) > 0.25
    days = pd.Series(np.r_[np.zeros(800), rng.integers(1, 31, 200)])  # a day count mostly 0
    assert math.isfinite(psi(days.to_numpy(), days.to_numpy()[::-1]))


def kaggle_sample(sample_csv: Path) -> pd.DataFrame:
    return read_kaggle_csv(sample_csv).frame


def test_drift_flags_the_changed_features_only(sample_csv: Path) -> None:
    frame = kaggle_sample(sample_csv)
    reference, current = frame.iloc[:3000].copy(), frame.iloc[3000:].copy()
    current["bmi"] = current["bmi"] + 6  # heavier people
    current.loc[current.index[:1200], "smoking"] = "Yes"
    current["source"] = "synthetic"
    window = pooled_window(pd.Series([NOW - timedelta(hours=1)] * len(current)), NOW, 24)
    report = drift_report(reference, current, window)
    assert set(report.drifted) == {"bmi", "smoking"}
    bmi = next(r for r in report.rows if r.feature == "bmi")
    assert bmi.method == "wasserstein_normed" and bmi.psi > 0.25
    assert report.sources == {"synthetic": 3000}
    untouched = column_drift("sex", reference["sex"], current["sex"])
    assert untouched.method == "jensen_shannon" and untouched.value < 0.05
    assert report.to_dict()["window"]["enough"] is True


def test_window_pools_days_until_it_holds_enough_rows() -> None:
    config = DriftSettings(min_rows=100, max_days=10)
    hourly = pd.Series([NOW - timedelta(hours=h) for h in range(1, 24 * 8)])  # one row an hour
    plenty = pooled_window(hourly, NOW, hours=24 * 5, config=config)
    assert plenty.pooled_days == 0 and plenty.enough and plenty.rows == 24 * 5
    pooled = pooled_window(hourly, NOW, hours=24, config=config)
    assert pooled.enough and pooled.pooled_days == 5  # 100 rows need 4 days and 4 hours
    assert pooled.rows == 120 and "pooled 5 days" in pooled.note
    short = pooled_window(hourly.iloc[:50], NOW, hours=24, config=config)
    assert not short.enough and short.rows == 50 and short.pooled_days == 10
    assert "fewer than needed" in short.note
    empty = pooled_window(pd.Series([], dtype="datetime64[ns, UTC]"), NOW, hours=24, config=config)
    assert empty.rows == 0 and not empty.enough


def test_value_codes_follow_the_spec_order(sample_csv: Path) -> None:
    frame = kaggle_sample(sample_csv).head(200)
    codes = value_codes(frame)
    assert list(codes.columns) == list(FEATURE_NAMES)
    older = frame["age_category"] == "80 or older"
    assert (codes.loc[older, "age_category"] == 12).all()
    assert codes["bmi"].equals(frame["bmi"].astype(float))
