"""How good a model is: metrics, the decision threshold, bootstrap noise, calibration by decile.

Kept apart from training so the champion gate, the benchmark and monitoring judge models the same way
(the images of these figures are drawn in :mod:`heartrisk.model.plots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

#: Fewest records with, and without, heart disease on which a model can be fitted or judged.
MIN_POSITIVES = 20


def average_precision(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Average precision (PR-AUC, as scikit-learn computes it), with optional row weights.

    Weights let a bootstrap resample be a vector of counts, so the scores are sorted only once.
    """
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    order = np.argsort(-np.asarray(p), kind="mergesort")
    y, w, p_sorted = y[order], w[order], np.asarray(p)[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    tp = np.cumsum(w * y)[last]
    fp = np.cumsum(w * (1 - y))[last]
    if tp[-1] <= 0:
        return 0.0
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Test metrics of calibrated probabilities ``p`` and decisions ``p >= threshold``."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    decided = p >= threshold
    tn, fp, fn, tp = confusion_matrix(y, decided, labels=[0, 1]).ravel()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": average_precision(y, p),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-9, 1 - 1e-9), labels=[0, 1])),
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
        "mean_probability": float(p.mean()), "positive_rate": float(y.mean()),
        "threshold": float(threshold),
    }


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold that maximises positive-class F1 on ``(y, p)``."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def recall_threshold(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The highest threshold whose recall is still at least ``target`` (screening use)."""
    _, recall, thresholds = precision_recall_curve(y, p)
    ok = np.flatnonzero(recall[:-1] >= target)
    return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])


@dataclass(frozen=True)
class Comparison:
    """Paired bootstrap of PR-AUC(challenger) - PR-AUC(champion) on the same records."""

    challenger: float
    champion: float
    difference: float
    low: float
    high: float
    resamples: int

    @property
    def noise(self) -> float:
        """Half-width of the 95 % interval of the difference: what chance alone can move."""
        return (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        """The challenger is better by more than the noise: the whole 95 % interval is above 0."""
        return self.low > 0


def compare(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray,
            resamples: int = 200, seed: int = 0) -> Comparison:
    """Paired, stratified bootstrap of the PR-AUC difference of two models on the same records."""
    y = np.asarray(y).astype(int)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = np.empty(resamples)
    for i in range(resamples):
        counts = np.zeros(len(y))
        np.add.at(counts, rng.choice(positives, len(positives)), 1)
        np.add.at(counts, rng.choice(negatives, len(negatives)), 1)
        diffs[i] = (average_precision(y, p_challenger, counts)
                    - average_precision(y, p_champion, counts))
    challenger, champion = average_precision(y, p_challenger), average_precision(y, p_champion)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return Comparison(challenger, champion, challenger - champion, float(low), float(high), resamples)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Mean prediction, observed rate and count per quantile bin of ``p``."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    mean_p, rate, count = [], [], []
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            mean_p.append(p[inside].mean())
            rate.append(np.asarray(y)[inside].mean())
            count.append(inside.sum())
    return np.array(mean_p), np.array(rate), np.array(count)
