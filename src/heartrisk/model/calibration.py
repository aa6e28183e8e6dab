"""Calibration: the classifier's raw log-odds -> calibrated log-odds, chosen per model version.

Three candidates (issue 16), fitted on the held-out slice of real training records:

- ``none``: the raw log-odds as they are (LightGBM and logistic regression are fitted on log-loss, so
  they may be calibrated already);
- ``platt``: a sigmoid on the raw log-odds (affine in log-odds);
- ``isotonic``: a monotone, piecewise-linear map of the raw log-odds to a probability (scikit-learn's
  ``IsotonicRegression``), which bends where a sigmoid cannot but needs more data to do it.

:func:`choose` scores each by out-of-fold predictions on the held-out slice (fitted on 4/5, scored on the
other 1/5, five times), keeps the lowest Brier score (a proper score, so the most accurate
probabilities) and refits it on the whole slice; expected calibration error is reported beside it.
Choosing on the in-sample fit would always crown isotonic, which can memorise the slice.

Explanations stay additive whichever is chosen: each calibration turns a row's raw contributions into
calibrated ones with one factor per row (:meth:`scale`: the slope for an affine map, the secant slope
between the base value and the row otherwise), so ``base + sum(contributions) == calibrated log-odds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

#: Clip for probabilities turned into log-odds (a forest or an isotonic map can say exactly 0 or 1).
EPS = 1e-6
METHODS: tuple[str, ...] = ("none", "platt", "isotonic")
#: Folds of the out-of-fold comparison on the held-out slice.
FOLDS = 5
#: Bins (equal numbers of rows) of the expected calibration error.
ECE_BINS = 10


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


class Calibration(Protocol):
    """What a model needs of its calibration: the map, and the per-row factor for explanations."""

    method: ClassVar[str]

    def __call__(self, margin: np.ndarray) -> np.ndarray: ...

    def scale(self, margin: np.ndarray, base: float) -> np.ndarray: ...


@dataclass(frozen=True)
class Platt:
    """calibrated log-odds = slope * raw log-odds + intercept."""

    slope: float
    intercept: float
    method: ClassVar[str] = "platt"

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> Platt:
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(margin).reshape(-1, 1), y)
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(margin, dtype=float) + self.intercept

    def scale(self, margin: np.ndarray, base: float) -> np.ndarray:
        return np.full(len(np.atleast_1d(margin)), self.slope)


@dataclass(frozen=True)
class Uncalibrated(Platt):
    """The raw log-odds unchanged (slope 1, intercept 0)."""

    slope: float = 1.0
    intercept: float = 0.0
    method: ClassVar[str] = "none"

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> Uncalibrated:
        return cls()


@dataclass(frozen=True, eq=False)
class Isotonic:
    """A monotone map of raw log-odds to probability, linear between the fitted points."""

    x: np.ndarray
    p: np.ndarray
    method: ClassVar[str] = "isotonic"

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> Isotonic:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(np.asarray(margin), y)
        return cls(np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        return logit(np.interp(np.asarray(margin, dtype=float), self.x, self.p))

    def scale(self, margin: np.ndarray, base: float) -> np.ndarray:
        """The secant slope between the base value and each row (a derivative where they meet)."""
        margin = np.atleast_1d(np.asarray(margin, dtype=float))
        gap = margin - base
        near = np.abs(gap) < 1e-9
        step = 1e-6
        secant = (self(margin) - self(np.array([base]))) / np.where(near, 1.0, gap)
        tangent = (self(margin + step) - self(margin - step)) / (2 * step)
        return np.where(near, tangent, secant)


FITTERS: dict[str, type[Platt] | type[Isotonic]] = {
    "none": Uncalibrated, "platt": Platt, "isotonic": Isotonic}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |predicted - observed| over bins of equal row counts, weighted by rows: on data with 8.6 %
    positives, equal-width bins would leave almost every row in the first one."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    gaps = [abs(p[part].mean() - y[part].mean()) * len(part)
            for part in np.array_split(order, min(bins, len(p))) if len(part)]
    return float(sum(gaps) / len(p))


def choose(margin: np.ndarray, y: np.ndarray, seed: int = 42, methods: tuple[str, ...] = METHODS
           ) -> tuple[Platt | Isotonic, list[dict[str, float | str | bool]]]:
    """The calibration with the lowest out-of-fold Brier score on ``(margin, y)``, refitted on all of
    it, and the comparison (one row per method: brier, ece, chosen)."""
    margin, y = np.asarray(margin, dtype=float), np.asarray(y).astype(int)
    folds = StratifiedKFold(min(FOLDS, int(min(y.sum(), len(y) - y.sum()))), shuffle=True,
                            random_state=seed)
    rows: list[dict[str, float | str | bool]] = []
    for method in methods:
        p = np.empty(len(y))
        for fit_on, score_on in folds.split(margin, y):
            calibration = FITTERS[method].fit(margin[fit_on], y[fit_on])
            p[score_on] = sigmoid(calibration(margin[score_on]))
        rows.append({"method": method, "brier": float(np.mean((p - y) ** 2)),
                     "ece": expected_calibration_error(y, p), "chosen": False})
    best = min(rows, key=lambda row: float(row["brier"]))
    best["chosen"] = True
    return FITTERS[str(best["method"])].fit(margin, y), rows
