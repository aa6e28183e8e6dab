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
from heartrisk.features import BY_NAME, FEATURE_NAMES
from heartrisk.monitoring.drift import PROBABILITY, DriftReport, DriftSettings, psi_level
from heartrisk.monitoring.metrics import (
    classification_metrics,
    confusion,
    daily_performance,
    recent_predictions,
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
from heartrisk.store.groups import HEART, open_group


class ReportSettings(BaseModel):
    """What the report covers (defaults suit the dashboard; a test may shrink them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(24, gt=0, description="the recent window, in hours")
    shap_rows: int = Field(500, ge=10, description="recent rows explained for the SHAP summary")
    recent_rows: int = Field(25, ge=1, le=500, description="latest predictions listed")
    drift: DriftSettings = DriftSettings()


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

    def summary_json(self) -> dict[str, Any]:
        return {"generated_at": self.generated_at.isoformat(timespec="seconds"), "hours": self.hours,
                "seconds": round(self.seconds, 3), **self.model_json(),
                "predictions": self.predictions, "metrics_all": clean(self.metrics_all),
                "metrics_window": clean(self.metrics_window),
                "drifted": self.drift.drifted if self.drift else [],
                "drift_window": self.drift_json().get("window"), "synthesizer": self.synthesizer,
                "erasure": self.erasure}


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
    every = read_predictions(settings)
    mine = every[every["model_version"] == str(model.version)]
    start = pd.Timestamp(now) - pd.Timedelta(hours=config.hours)
    window = mine[mine["event_time"] >= start]
    snap.predictions = {
        "rows": len(every), "champion_rows": len(mine), "window_rows": len(window),
        "by_source": {str(k): int(v) for k, v in mine["source"].value_counts().items()},
        "by_model_version": {str(k): int(v) for k, v in every["model_version"].value_counts().items()},
        "last_predicted_at": None if mine.empty else mine["predicted_at"].max().isoformat(),
    }
    if mine.empty:
        snap.notes.append(f"champion v{model.version} has made no predictions yet: run `heartrisk infer`")
    snap.metrics_all, snap.metrics_window = classification_metrics(mine), classification_metrics(window)
    snap.confusion_all, snap.confusion_window = confusion(mine).tolist(), confusion(window).tolist()
    snap.daily = daily_performance(every)
    candidates = recent_predictions(mine, 2 * config.recent_rows + 20)  # room for hidden copies
    known = Known(rows=rows, rows_from=None if rows is None else start.to_pydatetime(), predictions=mine)
    snap.drift, current = current_drift(settings, model, now + timedelta(microseconds=1), config.hours,
                                        config.drift, known=known)
    snap.probability_reference = reference_sample(settings, model)[PROBABILITY].to_numpy(dtype=float)
    snap.probability_window = current[PROBABILITY].dropna().to_numpy(dtype=float)
    copies = copies_of_real(settings, pd.concat([candidates["record_id"], current["record_id"]]))
    snap.recent = candidates[~candidates["record_id"].isin(copies)].head(config.recent_rows)
    snap.recent = snap.recent.reset_index(drop=True)
    snap.shap = shap_sample(model, current[~current["record_id"].isin(copies)], config.shap_rows)
    return finished(snap, started)


def guarded(read: Any, settings: Settings) -> dict[str, Any]:
    """A part of the report that cannot be read reports why instead of hiding the rest."""
    try:
        return read(settings)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


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
