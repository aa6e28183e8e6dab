"""How good a model is: metrics, the decision threshold, bootstrap noise and the evaluation plots.

Kept apart from training so the champion gate, the benchmark and monitoring judge models the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


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


def save_plots(y: np.ndarray, p: np.ndarray, threshold: float, folder: Path,
               title: str) -> list[Path]:
    """Confusion matrix, ROC, PR and reliability diagrams as PNGs in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y).astype(int)
    paths = []

    fig, ax = plt.subplots(figsize=(4.5, 4))
    matrix = confusion_matrix(y, p >= threshold, labels=[0, 1])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:,}", ha="center", va="center",
                color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks([0, 1], ["No", "Yes"])
    ax.set_yticks([0, 1], ["No", "Yes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nthreshold {threshold:.3f}", fontsize=9)
    paths.append(_save(fig, folder / "confusion_matrix.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=9)
    paths.append(_save(fig, folder / "roc_curve.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"PR-AUC {average_precision(y, p):.3f}")
    ax.axhline(y.mean(), ls="--", c="grey", lw=0.8, label=f"base rate {y.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="upper right")
    ax.set_title(title, fontsize=9)
    paths.append(_save(fig, folder / "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    mean_p, rate, _ = reliability(y, p)
    top = max(mean_p.max(), rate.max()) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8)
    ax.plot(mean_p, rate, marker="o", label=f"Brier {brier_score_loss(y, p):.4f}")
    ax.set_xlabel("mean predicted risk (decile)")
    ax.set_ylabel("observed rate")
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=9)
    paths.append(_save(fig, folder / "reliability.png"))
    return paths


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
