"""The monitoring report, built once: batch inference saves it, the dashboard renders it.

:func:`build_snapshot` reads the tables and the registry once and computes every figure: the model
card, prediction counts, metrics and confusion matrices (all predictions and the recent window),
performance per day, the latest Kaggle/synthetic predictions, drift against the training data, the
predicted-risk distributions, SHAP values of recent rows, data volume, the synthesizer's quality and
privacy, and the models that learned from erased rows. A :class:`Snapshot` holds aggregates only: user
rows are counted and scored in every aggregate but never listed (see
:func:`heartrisk.monitoring.metrics.recent_predictions`), and neither is a synthetic row that is an
exact copy of a real one (:func:`heartrisk.monitoring.reads.copies_of_real`): it is someone's answers.

Batch inference writes one as images and files (:func:`heartrisk.monitoring.images.save_report`); the
dashboard draws one as a page and JSON (:mod:`heartrisk.web.dashboard`). A new monitor or alert reads
a snapshot too, so it says what the two already say.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.features import BY_NAME, FEATURE_NAMES, LABEL
from heartrisk.monitoring.check_history import load_history
from heartrisk.monitoring.drift import PROBABILITY, DriftReport, DriftSettings, psi_level
from heartrisk.monitoring.metrics import (
    COUNT,
    classification_metrics,
    confusion,
    daily_performance,
    recent_predictions,
    weights,
)
from heartrisk.monitoring.reads import (
    Known,
    copies_of_real,
    current_drift,
    erased_models,
    heart_volume,
    read_predictions,
    reference_sample,
    synthesizer_quality,
)
from heartrisk.monitoring.served import (
    card_reliability,
    estimated_by_day,
    profile_table,
    requests_table,
    served_drift,
    suppressed_estimates,
    today_end,
)
from heartrisk.monitoring.served_profile import read_profile
from heartrisk.monitoring.subgroups import (
    MIN_POSITIVES,
    MIN_ROWS,
    calibration_by_day,
    reliability_curve,
    subgroup_table,
    subgroups_by_day,
)
from heartrisk.store.groups import HEART, open_group


class ReportSettings(BaseModel):
    """What the report covers (defaults suit the dashboard; a test may shrink them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(24, gt=0, description="the recent window, in hours")
    shap_rows: int = Field(500, ge=10, description="recent rows explained for the SHAP summary")
    recent_rows: int = Field(25, ge=1, le=500, description="latest predictions listed")
    drift: DriftSettings = DriftSettings()
    served_drift: DriftSettings = DriftSettings()
    served_draws: int = Field(2000, ge=100, description="draws behind the estimated performance's interval")


@dataclass(frozen=True)
class ShapSample:
    """SHAP contributions of recent rows (grouped to the 17 questions) and the rows' answers."""

    contributions: pd.DataFrame
    answers: pd.DataFrame
    base_value: float


@dataclass
class Snapshot:
    """One consistent view of the model, its predictions and the data, as of ``generated_at``."""

    generated_at: datetime
    hours: float
    model: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    metrics_all: dict[str, float] = field(default_factory=dict)
    metrics_window: dict[str, float] = field(default_factory=dict)
    confusion_all: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])
    confusion_window: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)
    recent: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift: DriftReport | None = None
    probability_reference: np.ndarray = field(default_factory=lambda: np.empty(0))
    probability_window: np.ndarray = field(default_factory=lambda: np.empty(0))
    shap: ShapSample | None = None
    volume: pd.DataFrame = field(default_factory=pd.DataFrame)
    synthesizer: dict[str, Any] = field(default_factory=dict)
    #: Models that learned from erased rows (:func:`heartrisk.monitoring.reads.erased_models`).
    erasure: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)
    served_drift: DriftReport | None = None
    subgroups: pd.DataFrame = field(default_factory=pd.DataFrame)
    subgroups_daily: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration_daily: pd.DataFrame = field(default_factory=pd.DataFrame)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    # ------------------------------------------------------------------ JSON views
    def model_json(self) -> dict[str, Any]:
        return {"model": self.model, "notes": self.notes}

    def performance_json(self) -> dict[str, Any]:
        return {"hours": self.hours, "all": clean(self.metrics_all),
                "window": clean(self.metrics_window), "daily": records(self.daily)}

    def confusion_json(self) -> dict[str, Any]:
        return {"labels": ["No", "Yes"], "rows": "true", "columns": "predicted",
                "all": self.confusion_all, "window": self.confusion_window, "hours": self.hours}

    def drift_json(self) -> dict[str, Any]:
        if self.drift is None:
            return {"available": False, "notes": self.notes}
        out = self.drift.to_dict()
        for row in out["features"]:  # type: ignore[union-attr]
            row["psi_level"] = psi_level(row.get("psi"))
        return {"available": True, **out}

    def volume_json(self) -> dict[str, Any]:
        volume = self.volume.reset_index(names="day") if not self.volume.empty else self.volume
        return {"heart_rows_by_day_and_source": records(volume),
                "predictions": self.predictions}

    def recent_json(self) -> dict[str, Any]:
        return {"rows": records(self.recent), "predictions_by_source": self.predictions.get("by_source", {}),
                "note": "user rows, and synthetic rows that copy a real row, are counted in the "
                        "aggregates but never listed"}

    def shap_json(self) -> dict[str, Any]:
        if self.shap is None:
            return {"available": False}
        importance = self.shap.contributions.abs().mean().sort_values(ascending=False)
        direction = self.shap.contributions.mean()
        return {"available": True, "rows": len(self.shap.contributions),
                "base_value": self.shap.base_value, "units": "log-odds",
                "mean_abs": {k: float(v) for k, v in importance.items()},
                "mean": {k: float(direction[k]) for k in importance.index}}

    def synthesizer_json(self) -> dict[str, Any]:
        return self.synthesizer

    def served_json(self) -> dict[str, Any]:
        """The served population: counts (below 10 as "<10"), estimated performance, drift."""
        drift = None
        if self.served_drift is not None:
            drift = self.served_drift.to_dict()
            for row in drift["features"]:  # type: ignore[union-attr]
                row["psi_level"] = psi_level(row.get("psi"))
        return {**self.served, "drift": drift,
                "note": "counts of what was asked, per day; nothing per person is kept"}

    def subgroups_json(self) -> dict[str, Any]:
        return {"all": records(self.subgroups), "daily": records(self.subgroups_daily),
                "minimum_rows": MIN_ROWS, "minimum_positives": MIN_POSITIVES}

    def checks_json(self) -> dict[str, Any]:
        return {"runs": self.checks, "latest": self.checks[-1] if self.checks else None}

    def calibration_json(self) -> dict[str, Any]:
        return {"daily": records(self.calibration_daily), "reliability": records(self.reliability)}

    def summary_json(self) -> dict[str, Any]:
        return {"generated_at": self.generated_at.isoformat(timespec="seconds"), "hours": self.hours,
                "seconds": round(self.seconds, 3), **self.model_json(),
                "predictions": self.predictions, "metrics_all": clean(self.metrics_all),
                "metrics_window": clean(self.metrics_window),
                "drifted": self.drift.drifted if self.drift else [],
                "drift_window": self.drift_json().get("window"), "synthesizer": self.synthesizer,
                "erasure": self.erasure,
                "served_drifted": self.served_drift.drifted if self.served_drift else []}


def build_snapshot(settings: Settings, config: ReportSettings, now: datetime | None = None,
                   model: Any = None, rows: pd.DataFrame | None = None) -> Snapshot:
    """Read the tables and the registry once and compute every figure of the report.

    ``model`` is the champion to report on (default: the registry's champion now); ``rows`` are the
    ``heart`` rows of the window a caller already read (batch inference), used instead of reading
    them again.
    """
    started = time.perf_counter()
    now = now or utc_now()
    snap = Snapshot(generated_at=now, hours=config.hours)
    snap.synthesizer = synthesizer_quality(settings)
    snap.erasure = guarded(erased_models, settings)
    snap.checks = load_history(settings)
    heart = open_group(settings, HEART)
    if not heart.exists():
        snap.notes.append("the feature store is empty: run `heartrisk ingest`")
        return finished(snap, started)
    snap.volume = heart_volume(settings)
    if model is None:
        from heartrisk.model.registry import NoModelError, champion_model

        try:
            model = champion_model(settings)
        except NoModelError as exc:
            snap.notes.append(str(exc))
            return finished(snap, started)
    snap.model = model_card(model)
    start = pd.Timestamp(now) - pd.Timedelta(hours=config.hours)
    # room for the recent rows hidden as copies of real rows (issue 14)
    seen = predictions_seen(settings, str(model.version), start, 2 * config.recent_rows + 20)
    add_performance(snap, seen, model)
    mine = seen.mine
    known = Known(rows=rows, rows_from=None if rows is None else start.to_pydatetime(),
                  predictions=None if COUNT in mine else mine)  # aggregated: the drift window reads its own
    snap.drift, current = current_drift(settings, model, now + timedelta(microseconds=1), config.hours,
                                        config.drift, known=known)
    snap.probability_reference = reference_sample(settings, model)[PROBABILITY].to_numpy(dtype=float)
    snap.probability_window = current[PROBABILITY].dropna().to_numpy(dtype=float)
    copies = copies_of_real(settings, pd.concat([seen.recent["record_id"], current["record_id"]]))
    snap.recent = seen.recent[~seen.recent["record_id"].isin(copies)].head(config.recent_rows)
    snap.recent = snap.recent.reset_index(drop=True)
    snap.shap = shap_sample(model, current[~current["record_id"].isin(copies)], config.shap_rows)
    add_subgroups(snap, settings, mine)
    add_served(snap, settings, model, now, config)
    return finished(snap, started)


def add_performance(snap: Snapshot, seen: Seen, model: Any) -> None:
    """Prediction counts, metrics, confusion matrices and daily performance of the champion."""
    every, mine, window = seen.every, seen.mine, seen.window
    snap.predictions = {
        "rows": int(weights(every).sum()), "champion_rows": int(weights(mine).sum()),
        "window_rows": len(window),
        "by_source": counts_by(mine, "source"),
        "by_model_version": counts_by(every, "model_version"),
        "last_predicted_at": None if seen.last_predicted_at is None else seen.last_predicted_at.isoformat(),
    }
    if mine.empty:
        snap.notes.append(f"champion v{model.version} has made no predictions yet: run `heartrisk infer`")
    snap.metrics_all, snap.metrics_window = classification_metrics(mine), classification_metrics(window)
    snap.confusion_all, snap.confusion_window = confusion(mine).tolist(), confusion(window).tolist()
    snap.daily = daily_performance(every)


def add_subgroups(snap: Snapshot, settings: Settings, mine: pd.DataFrame) -> None:
    """Subgroup metrics, calibration per day and the reliability curve of the labelled predictions.

    They need each prediction's record (its sex, age and race): with the daft engine the predictions
    arrive aggregated, so the report says they were not computed rather than read the whole table."""
    if COUNT in mine:
        snap.notes.append("subgroups and calibration over time need per-record predictions: not "
                          "computed with the daft engine")
        return
    labelled = with_answers(settings, mine)
    snap.subgroups, snap.subgroups_daily = subgroup_table(labelled), subgroups_by_day(labelled)
    snap.calibration_daily = calibration_by_day(labelled)
    scored = labelled[labelled[LABEL.name].notna()]
    snap.reliability = reliability_curve(scored[LABEL.name].to_numpy(dtype=float),
                                         scored["probability"].to_numpy(dtype=float))

def guarded(read: Any, settings: Settings) -> dict[str, Any]:
    """A part of the report that cannot be read reports why instead of hiding the rest."""
    try:
        return read(settings)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def with_answers(settings: Settings, predictions: pd.DataFrame) -> pd.DataFrame:
    """Predictions with the subgroup answers of their records (sex, age category, race)."""
    columns = ["record_id", "sex", "age_category", "race"]
    answers = open_group(settings, HEART).read(columns=columns)
    return predictions.merge(answers, on="record_id", how="left")


def add_served(snap: Snapshot, settings: Settings, model: Any, now: datetime,
               config: ReportSettings) -> None:
    """The served population from the serving profile: counts, estimated performance and drift."""
    profile = read_profile(settings)
    mine = profile[profile["model_version"] == str(model.version)] if not profile.empty else profile
    reliability = card_reliability(getattr(model, "card", None))
    estimates = estimated_by_day(mine, draws=config.served_draws, reliability=reliability)
    snap.served = {"recalibrated": reliability is not None,
                   "requests_by_day": requests_table(profile), "answers": profile_table(profile),
                   "estimated": suppressed_estimates(estimates), "model_version": str(model.version),
                   "threshold": model.threshold}
    if not mine.empty:
        snap.served_drift = served_drift(reference_sample(settings, model), mine, today_end(now),
                                         config.served_drift)


@dataclass(frozen=True)
class Seen:
    """What the report reads of ``heart_predictions``: every prediction and the champion's (as rows,
    or aggregated with a ``count`` column by the daft engine), the champion's recent window and latest
    rows, and when it last predicted."""

    every: pd.DataFrame
    mine: pd.DataFrame
    window: pd.DataFrame
    recent: pd.DataFrame
    last_predicted_at: pd.Timestamp | None


def predictions_seen(settings: Settings, version: str, start: pd.Timestamp, recent_rows: int) -> Seen:
    """``heart_predictions`` as the report needs it, read by the batch engine of the settings: the
    local one reads the table into this process, the daft one aggregates it where it is."""
    if settings.batch_engine == "daft":
        from heartrisk.engine.runner import require_daft

        require_daft()
        from heartrisk.engine.aggregates import prediction_aggregates

        agg = prediction_aggregates(settings, version, start.to_pydatetime(), recent_rows)
        mine = agg.ties[agg.ties["model_version"] == version]
        return Seen(agg.ties, mine, agg.window, recent_predictions(agg.recent, recent_rows),
                    agg.last_predicted_at)
    every = read_predictions(settings)
    mine = every[every["model_version"] == version]
    return Seen(every, mine, mine[mine["event_time"] >= start], recent_predictions(mine, recent_rows),
                None if mine.empty else mine["predicted_at"].max())


def counts_by(frame: pd.DataFrame, column: str) -> dict[str, int]:
    """Predictions per value of ``column`` (weighted when the frame is aggregated), largest first."""
    counts = pd.Series(weights(frame), index=frame[column].astype(str).to_numpy()).groupby(level=0).sum()
    return {str(k): int(v) for k, v in counts.sort_values(ascending=False, kind="stable").items()}


def finished(snap: Snapshot, started: float) -> Snapshot:
    snap.seconds = time.perf_counter() - started
    return snap


def model_card(model: Any) -> dict[str, Any]:
    """What the report says about the champion: version, when, on what data, how good."""
    return {
        "version": model.version,
        "family": getattr(model, "family", ""),
        "trained_at": model.trained_at.isoformat(timespec="seconds"),
        "feature_group": model.feature_group,
        "feature_group_version": model.feature_group_version,
        "threshold": model.threshold,
        "base_rate": model.base_rate,
        "run_id": getattr(model, "run_id", ""),
        "test_metrics": {k: v for k, v in sorted(model.metrics.items())
                         if k in ("roc_auc", "pr_auc", "precision", "recall", "f1", "brier",
                                  "log_loss", "accuracy")},
    }


def shap_sample(model: Any, rows: pd.DataFrame, size: int) -> ShapSample | None:
    """Explain up to ``size`` rows (seeded sample), user rows left out: this feeds a per-row plot."""
    rows = rows[rows["source"] != "user"] if "source" in rows else rows
    if rows.empty:
        return None
    if len(rows) > size:
        rows = rows.sample(n=size, random_state=0)
    answers = rows[list(FEATURE_NAMES)].reset_index(drop=True)
    contributions = model.explain(answers)
    return ShapSample(contributions.reset_index(drop=True), answers, float(model.base_value))


def value_codes(X: pd.DataFrame) -> pd.DataFrame:
    """Answers as numbers for colouring a SHAP summary: numbers as they are, answers by their
    position in the spec's order (No < Yes, 18-24 < … < 80 or older), Unknown as NaN."""
    out = {}
    for name in FEATURE_NAMES:
        spec = BY_NAME[name]
        column = X[name]
        if spec.is_numeric:
            out[name] = pd.to_numeric(column, errors="coerce").astype(float)
        else:
            codes = {value: float(i) for i, value in enumerate(spec.values)}
            out[name] = column.map(codes).astype(float)
    return pd.DataFrame(out, index=X.index)


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity as None (JSON has neither)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records (timestamps as ISO text, NaN/NA as None)."""
    if frame.empty:
        return []
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].map(lambda t: t.isoformat())
    out = out.astype(object).where(out.notna(), None)
    return [clean(row) for row in out.to_dict(orient="records")]
