"""Everything the dashboard shows, computed live from the store and the registry in one pass.

A :class:`Snapshot` holds aggregates only: metrics, confusion counts, daily volumes, drift figures,
SHAP values of Kaggle and synthetic rows and the latest Kaggle/synthetic predictions. User rows are
counted and scored in every aggregate but never listed
(see :func:`heartrisk.monitoring.metrics.recent_predictions`).
The page and the JSON API are both drawn from one snapshot, cached for a few seconds per
(champion, table versions, window), so a page that calls several endpoints reads the tables once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.monitoring.metrics import (
    PROBABILITY,
    DriftReport,
    DriftSettings,
    classification_metrics,
    confusion,
    daily_performance,
    psi_level,
    recent_predictions,
)
from heartrisk.monitoring.reads import (
    Known,
    ShapSample,
    current_drift,
    heart_volume,
    model_card,
    read_predictions,
    reference_sample,
    shap_sample,
    synthesizer_quality,
)
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group


class DashboardSettings(BaseModel):
    """Knobs of the dashboard (defaults suit a laptop; a test may shrink them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: float = Field(24, gt=0, le=24 * 366, description="the recent window, in hours")
    cache_seconds: float = Field(60, ge=0)
    shap_rows: int = Field(500, ge=10)
    recent_rows: int = Field(25, ge=1, le=500)
    drift: DriftSettings = DriftSettings()


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
                "note": "user rows are counted in the aggregates but never listed"}

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
                "drift_window": self.drift_json().get("window"), "synthesizer": self.synthesizer}


def build_snapshot(settings: Settings, config: DashboardSettings, now: datetime | None = None) -> Snapshot:
    """Read the tables and the registry once and compute every figure of the dashboard."""
    from heartrisk.model.registry import NoModelError, champion_model

    started = time.perf_counter()
    now = now or utc_now()
    snap = Snapshot(generated_at=now, hours=config.hours)
    snap.synthesizer = synthesizer_quality(settings)
    heart = open_group(settings, HEART)
    if not heart.exists():
        snap.notes.append("the feature store is empty: run `heartrisk ingest`")
        snap.seconds = time.perf_counter() - started
        return snap
    snap.volume = heart_volume(settings)
    try:
        model = champion_model(settings)
    except NoModelError as exc:
        snap.notes.append(str(exc))
        snap.seconds = time.perf_counter() - started
        return snap
    snap.model = model_card(model)
    every = read_predictions(settings)
    mine = every[every["model_version"] == str(model.version)]
    window = mine[mine["event_time"] >= pd.Timestamp(now) - pd.Timedelta(hours=config.hours)]
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
    snap.recent = recent_predictions(mine, config.recent_rows)
    end = now + timedelta(microseconds=1)
    snap.drift, rows = current_drift(settings, model, end, config.hours, config.drift,
                                     known=Known(predictions=mine))
    snap.probability_reference = reference_sample(settings, model)[PROBABILITY].to_numpy(dtype=float)
    snap.probability_window = rows[PROBABILITY].dropna().to_numpy(dtype=float)
    snap.shap = shap_sample(model, rows, config.shap_rows)
    snap.seconds = time.perf_counter() - started
    return snap


class SnapshotCache:
    """The latest snapshot per window, rebuilt when a table or the champion moved or it is too old."""

    def __init__(self, settings: Settings, config: DashboardSettings) -> None:
        self.settings = settings
        self.config = config
        self._lock = threading.Lock()
        self._entries: dict[float, tuple[tuple[Any, ...], float, Snapshot]] = {}

    def _state(self) -> tuple[Any, ...]:
        from heartrisk.model.registry import champion_version

        versions = []
        for spec in (HEART, HEART_PREDICTIONS):
            group = open_group(self.settings, spec)
            versions.append(group.version() if group.exists() else None)
        return (champion_version(self.settings), *versions)

    def get(self, hours: float | None = None) -> Snapshot:
        config = self.config if hours is None else self.config.model_copy(update={"hours": hours})
        state = self._state()
        with self._lock:
            entry = self._entries.get(config.hours)
            if entry and entry[0] == state and time.monotonic() - entry[1] < config.cache_seconds:
                return entry[2]
        snap = build_snapshot(self.settings, config)
        with self._lock:
            self._entries[config.hours] = (state, time.monotonic(), snap)
            while len(self._entries) > 8:
                self._entries.pop(next(iter(self._entries)))
        return snap


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
