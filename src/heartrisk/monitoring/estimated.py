"""Performance estimated without labels (CBPE, as NannyML calls it), from the served risk histogram.

With a calibrated model, a person given risk ``p`` has heart disease with probability ``p``. So for a
day's requests, the expected confusion matrix at the threshold follows from the risks alone:
E[TP] is the sum of the risks of those flagged, E[FP] the number flagged minus it, E[FN] the sum of the
risks of those not flagged. The profile keeps, per risk bin of width 0.01 and decision, the number of
requests and the sum of their risks, which is all this needs.

The calibration is the weak point: fitted on a few hundred held-out records, the quick model's risks
overstate the truth above its threshold (0.51 said, 0.45 observed on 280,000 other records), which
biased precision by +0.06 and recall by +0.02 per day; the interval was as wide as the errors'
spread, but they were not centred on 0 (precision, recall and F1 inside on 83-91 % of days).
So, as NannyML does with its reference data, the risks are first recalibrated on a
:class:`Reliability` table of labelled reference records (a version's test records; bins only, never
a person's risk): each cell's risk times its reference bin's observed/predicted ratio.

The interval: each draw takes every reference bin's ratio from its Beta posterior (the reference's
own uncertainty), then each risk cell's positives as Binomial(n, recalibrated mean risk); the 2.5 and
97.5 % quantiles of each metric over the draws. A binomial with the bin's mean risk varies at least
as much as the requests' own coins, so it leans wide rather than narrow. :func:`validate` checks it
on real labelled records the reference did not hold: inside on 94-96 % of days on average with a
50,000-record reference (bench/served_monitoring.py, docs/monitoring.md).

NannyML itself was not added: it brings its own pins of pandas, numpy and scikit-learn for what is a
few lines of numpy here, and its isotonic recalibration keeps the reference's records.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from heartrisk.model.reliability import Reliability

METRICS: tuple[str, ...] = ("prevalence", "precision", "recall", "f1")


@dataclass(frozen=True)
class Estimate:
    """One metric's estimate and its 95 % interval (NaN when undefined, e.g. nobody flagged)."""

    value: float
    low: float
    high: float

    def covers(self, actual: float) -> bool:
        return bool(self.low - 1e-12 <= actual <= self.high + 1e-12)


def _metrics(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, n: float) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"prevalence": (tp + fn) / n, "precision": tp / (tp + fp), "recall": tp / (tp + fn),
                "f1": 2 * tp / (2 * tp + fp + fn)}


def recalibrated(rate: np.ndarray, bins: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Cells' mean risks times their reference bin's ratio (1 where there is no bin), within [0, 1];
    ``ratios`` one row per draw (or a single row)."""
    factor = np.where(bins >= 0, ratios[..., np.maximum(bins, 0)], 1.0)
    return np.clip(rate * factor, 0, 1)


def estimate(cells: pd.DataFrame, draws: int = 2000, seed: int = 0,
             reliability: Reliability | None = None) -> dict[str, Estimate]:
    """CBPE of prevalence, precision, recall and F1 from risk cells (``flagged``, ``count``,
    ``probability_sum``: one row per risk bin and decision), recalibrated on ``reliability`` when given
    (the interval then also carries the reference's own uncertainty)."""
    count = cells["count"].to_numpy(dtype=float)
    total = cells["probability_sum"].to_numpy(dtype=float)
    flagged = cells["flagged"].to_numpy(dtype=bool)
    n = float(count.sum())
    if n == 0:
        return {m: Estimate(math.nan, math.nan, math.nan) for m in METRICS}
    n_flagged = float(count[flagged].sum())
    rate = np.clip(np.divide(total, count, out=np.zeros_like(total), where=count > 0), 0, 1)
    rng = np.random.default_rng(seed)
    if reliability is None:
        point, drawn_rate = rate, rate
    else:
        bins = reliability.bins_of(flagged, rate)
        point = recalibrated(rate, bins, reliability.ratios(None, rng))
        drawn_rate = recalibrated(rate, bins, reliability.ratios(draws, rng))
    cases = count * point
    expected = _metrics(np.array(cases[flagged].sum()), np.array(n_flagged - cases[flagged].sum()),
                        np.array(cases[~flagged].sum()), n)
    positives = rng.binomial(count.astype(np.int64), drawn_rate, size=(draws, len(count)))
    tp = positives[:, flagged].sum(axis=1).astype(float)
    fn = positives[:, ~flagged].sum(axis=1).astype(float)
    drawn = _metrics(tp, n_flagged - tp, fn, n)
    out = {}
    for name in METRICS:
        finite = drawn[name][np.isfinite(drawn[name])]
        low, high = (np.quantile(finite, [0.025, 0.975]) if len(finite) else (math.nan, math.nan))
        out[name] = Estimate(float(expected[name]), float(low), float(high))
    return out


def risk_cells(probabilities: np.ndarray, threshold: float) -> pd.DataFrame:
    """Risks binned as the serving profile bins them (width 0.01, split by the decision)."""
    p = np.asarray(probabilities, dtype=float)
    bins = np.clip(np.floor(p * 100), 0, 99).astype(int)
    frame = pd.DataFrame({"bin": bins, "flagged": p >= threshold, "probability": p})
    cells = frame.groupby(["bin", "flagged"], as_index=False).agg(
        count=("probability", "size"), probability_sum=("probability", "sum"))
    return cells


def actual(y: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """The same four metrics from the true labels."""
    y = np.asarray(y, dtype=bool)
    decided = np.asarray(probabilities) >= threshold
    tp, fp, fn = (float(np.sum(y & decided)), float(np.sum(~y & decided)), float(np.sum(y & ~decided)))
    return {k: float(v) for k, v in _metrics(np.array(tp), np.array(fp), np.array(fn), len(y)).items()}


@dataclass(frozen=True)
class Validation:
    """How often the estimate's interval held the actual figure, over chunks of real records."""

    chunks: int
    chunk_rows: int
    coverage: dict[str, float]
    mean_abs_error: dict[str, float]
    mean_error: dict[str, float]
    mean_width: dict[str, float]

    @property
    def passed(self) -> bool:
        return all(v >= 0.9 for v in self.coverage.values())

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def validate(y: np.ndarray, probabilities: np.ndarray, threshold: float, chunk_rows: int = 500,
             seed: int = 0, draws: int = 1000, reliability: Reliability | None = None) -> Validation:
    """Cut real labelled records into shuffled chunks of ``chunk_rows`` (a day of requests) and count
    how often each metric's actual value fell inside the estimated interval; also the mean error
    (estimated minus actual: a bias) and the interval's mean width, which tell a biased estimate from
    a too narrow interval. The records must be ones ``reliability`` was not built from."""
    order = np.random.default_rng(seed).permutation(len(y))
    y, p = np.asarray(y, dtype=bool)[order], np.asarray(probabilities, dtype=float)[order]
    hits: dict[str, list[bool]] = {m: [] for m in METRICS}
    errors: dict[str, list[float]] = {m: [] for m in METRICS}
    widths: dict[str, list[float]] = {m: [] for m in METRICS}
    chunks = len(y) // chunk_rows
    for i in range(chunks):
        part = slice(i * chunk_rows, (i + 1) * chunk_rows)
        estimated = estimate(risk_cells(p[part], threshold), draws=draws, seed=seed + i,
                             reliability=reliability)
        truth = actual(y[part], p[part], threshold)
        for m in METRICS:
            if math.isfinite(truth[m]) and math.isfinite(estimated[m].value):
                hits[m].append(estimated[m].covers(truth[m]))
                errors[m].append(estimated[m].value - truth[m])
                widths[m].append(estimated[m].high - estimated[m].low)

    def mean(values: dict[str, list[Any]], of: Any = np.asarray) -> dict[str, float]:
        return {m: float(np.mean(of(np.array(v)))) if v else math.nan for m, v in values.items()}

    return Validation(chunks=chunks, chunk_rows=chunk_rows, coverage=mean(hits),
                      mean_abs_error=mean(errors, np.abs), mean_error=mean(errors), mean_width=mean(widths))
