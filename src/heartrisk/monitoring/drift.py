"""Drift: whether the data moved since the champion was trained.

Each feature, and the predicted probability, is compared between a reference sample (the data the
champion was trained on) and a recent window: Jensen-Shannon distance for answers, normed Wasserstein
distance (plus PSI) for numbers, with Evidently's usual thresholds. A window that holds fewer than
:data:`DriftSettings.min_rows` rows is pooled back day by day, and the report says when even
:data:`DriftSettings.max_days` days were not enough. Pure computations on frames; the rows come from
:mod:`heartrisk.monitoring.reads`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from heartrisk.clock import as_utc
from heartrisk.features import BY_NAME, FEATURE_NAMES

#: The drift row of the model output (the features' rows are named after the features).
PROBABILITY = "probability"
DAY = timedelta(days=1)


class DriftSettings(BaseModel):
    """Knobs of the drift report. Thresholds are Evidently's defaults for samples over 1,000 rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fewest rows a window needs before its distribution is compared (else days are pooled).
    min_rows: int = 500
    #: How far back the window may be pooled.
    max_days: int = 30
    #: Jensen-Shannon distance (base 2, 0..1) at or above which an answer has drifted.
    js_threshold: float = 0.1
    #: Wasserstein distance divided by the reference's standard deviation: drift at or above it.
    wasserstein_threshold: float = 0.1
    #: Population stability index: 0.1 "moderate", 0.25 "significant" shift.
    psi_moderate: float = 0.1
    psi_significant: float = 0.25
    #: Quantile bins of the reference for the PSI.
    psi_bins: int = 10
    #: A window larger than this is compared through a seeded sample of this many rows: the
    #: distances settle long before, and the sorts behind them are what a daily run waits for.
    max_rows: int = 50_000


@dataclass(frozen=True)
class Window:
    """The rows a drift report compares: ``[start, end)``, how many, and whether that was enough."""

    start: datetime
    end: datetime
    rows: int
    requested_hours: float
    enough: bool
    pooled_days: int

    @property
    def note(self) -> str:
        span = f"{self.rows:,} rows from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"
        if not self.enough:
            return (f"only {span} (pooled back {self.pooled_days} days): fewer than needed, "
                    "so the drift figures are noisy; read them with care")
        if self.pooled_days:
            return f"{span}: the last {self.requested_hours:g} h held too few rows, pooled " \
                   f"{self.pooled_days} days"
        return span


def pooled_window(times: pd.Series, end: datetime, hours: float,
                  config: DriftSettings | None = None) -> Window:
    """The last ``hours`` before ``end``, widened a day at a time until it holds ``min_rows`` rows.

    ``times`` are the event times available (any older rows are ignored beyond ``max_days``).
    """
    config = config or DriftSettings()
    end_ts = as_utc(pd.Timestamp(end))
    times = pd.to_datetime(times, utc=True)
    times = times[times < end_ts].sort_values(ascending=False)
    start = end_ts - pd.Timedelta(hours=hours)
    inside = int((times >= start).sum())
    days = 0
    if inside < config.min_rows:
        oldest = end_ts - pd.Timedelta(days=config.max_days)
        if len(times) >= config.min_rows and times.iloc[config.min_rows - 1] >= oldest:
            needed = end_ts - times.iloc[config.min_rows - 1]
            days = max(1, math.ceil(needed / DAY))
        else:
            days = config.max_days
        start = min(start, end_ts - pd.Timedelta(days=days))
        inside = int((times >= start).sum())
    # Python datetimes hold microseconds: floor explicitly (to_pydatetime would drop them with a warning)
    return Window(start=start.floor("us").to_pydatetime(), end=end_ts.floor("us").to_pydatetime(),
                  rows=inside, requested_hours=hours, enough=inside >= config.min_rows, pooled_days=days)


@dataclass(frozen=True)
class FeatureDrift:
    """One line of the drift table."""

    feature: str
    kind: str
    method: str
    value: float
    threshold: float
    drifted: bool
    psi: float | None
    reference_rows: int
    current_rows: int
    reference_unknown: float
    current_unknown: float


def category_shares(values: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Share of each allowed answer plus Unknown (missing), in the spec's order."""
    counts = values.value_counts()
    shares = np.array([*(counts.get(c, 0) for c in categories), values.isna().sum()], dtype=float)
    return shares / shares.sum() if shares.sum() else shares


def js_distance(reference: pd.Series, current: pd.Series, categories: tuple[str, ...]) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) between the two answer distributions."""
    return float(jensenshannon(category_shares(reference, categories),
                               category_shares(current, categories), base=2))


def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance in units of the reference's standard deviation (Evidently's)."""
    spread = float(np.std(reference))
    distance = float(wasserstein_distance(reference, current))
    return distance / spread if spread > 0 else (0.0 if distance == 0 else math.inf)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over quantile bins of the reference.

    Ties (a day count that is mostly 0) merge bins; empty bins get a small share so it stays finite.
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    inner = edges[1:-1]
    ref = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1)
    cur = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1)
    ref_share = np.clip(ref / ref.sum(), 1e-4, None)
    cur_share = np.clip(cur / cur.sum(), 1e-4, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def column_drift(name: str, reference: pd.Series, current: pd.Series,
                 config: DriftSettings | None = None) -> FeatureDrift:
    """Drift of one feature (or of the probability) between reference and current values."""
    config = config or DriftSettings()
    spec = BY_NAME.get(name)
    numeric = spec is None or spec.is_numeric
    ref_known, cur_known = reference.dropna(), current.dropna()
    common = {"feature": name, "reference_rows": len(reference), "current_rows": len(current),
              "reference_unknown": float(reference.isna().mean()) if len(reference) else math.nan,
              "current_unknown": float(current.isna().mean()) if len(current) else math.nan}
    if not numeric:
        value = js_distance(reference, current, spec.values) if len(current) else math.nan
        return FeatureDrift(kind=spec.kind, method="jensen_shannon", value=value,
                            threshold=config.js_threshold, drifted=bool(value >= config.js_threshold),
                            psi=None, **common)
    if len(ref_known) == 0 or len(cur_known) == 0:
        return FeatureDrift(kind="number", method="wasserstein_normed", value=math.nan,
                            threshold=config.wasserstein_threshold, drifted=False, psi=None, **common)
    ref = ref_known.to_numpy(dtype=float)
    cur = cur_known.to_numpy(dtype=float)
    value = normed_wasserstein(ref, cur)
    return FeatureDrift(kind="number", method="wasserstein_normed", value=value,
                        threshold=config.wasserstein_threshold,
                        drifted=bool(value >= config.wasserstein_threshold),
                        psi=psi(ref, cur, config.psi_bins), **common)


@dataclass(frozen=True)
class DriftReport:
    """Drift of every feature and of the probability over one window."""

    window: Window
    rows: tuple[FeatureDrift, ...]
    sources: dict[str, int]

    @property
    def drifted(self) -> list[str]:
        return [r.feature for r in self.rows if r.drifted]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (NaN and infinity become None)."""
        return {
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat(),
                       "rows": self.window.rows, "enough": self.window.enough,
                       "pooled_days": self.window.pooled_days, "note": self.window.note},
            "sources": self.sources,
            "drifted": self.drifted,
            "features": [{k: _finite(v) for k, v in asdict(r).items()} for r in self.rows],
        }


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, window: Window,
                 config: DriftSettings | None = None) -> DriftReport:
    """Compare each feature, and the probability where both sides have it, between two frames.

    ``current`` is the rows inside ``window`` (features, ``source`` and, for scored rows,
    ``probability``); ``reference`` the training sample with the champion's ``probability``.
    """
    config = config or DriftSettings()
    sources = {str(k): int(v) for k, v in current["source"].value_counts().items()} \
        if "source" in current else {}
    if len(current) > config.max_rows:
        current = current.sample(n=config.max_rows, random_state=0)
    rows = [column_drift(name, reference[name], current[name], config) for name in FEATURE_NAMES]
    if PROBABILITY in reference and PROBABILITY in current:
        rows.append(column_drift(PROBABILITY, reference[PROBABILITY], current[PROBABILITY], config))
    return DriftReport(window=window, rows=tuple(rows), sources=sources)


def psi_level(value: float | None, config: DriftSettings | None = None) -> str:
    """'significant', 'moderate' or 'stable' for a PSI (empty for a missing one)."""
    config = config or DriftSettings()
    if value is None or not math.isfinite(value):
        return ""
    if value >= config.psi_significant:
        return "significant"
    return "moderate" if value >= config.psi_moderate else "stable"


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
