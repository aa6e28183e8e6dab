"""The evaluation images of a trained model: confusion matrix, ROC, PR, reliability, SHAP summary.

Every image is a matplotlib ``Figure`` made outside pyplot: no global figure registry and no GUI
backend, so drawing is safe in the scheduler's thread and in a server (pyplot is not thread-safe).
:func:`figure` and :func:`save_figure` are also how the monitoring images are drawn and written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    brier_score_loss,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from heartrisk.files import atomic_write
from heartrisk.model.evaluation import average_precision, reliability
from heartrisk.model.explain import mean_abs


def figure(**kwargs: Any) -> Any:
    """A matplotlib Figure outside pyplot (``kwargs`` as for ``Figure``, e.g. ``figsize``)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out and write ``fig`` as a PNG, atomically (a reader never sees half an image)."""
    fig.tight_layout()
    with atomic_write(path) as partial:
        fig.savefig(partial, dpi=110, format="png")
    return path


def save_plots(y: np.ndarray, p: np.ndarray, threshold: float, folder: Path,
               title: str) -> list[Path]:
    """Confusion matrix, ROC, PR and reliability diagrams as PNGs in ``folder``."""
    y = np.asarray(y).astype(int)
    return [confusion_plot(y, p, threshold, title, folder / "confusion_matrix.png"),
            roc_plot(y, p, title, folder / "roc_curve.png"),
            pr_plot(y, p, title, folder / "pr_curve.png"),
            reliability_plot(y, p, title, folder / "reliability.png")]


def confusion_plot(y: np.ndarray, p: np.ndarray, threshold: float, title: str, path: Path) -> Path:
    fig = figure(figsize=(4.5, 4))
    ax = fig.subplots()
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
    return save_figure(fig, path)


def roc_plot(y: np.ndarray, p: np.ndarray, title: str, path: Path) -> Path:
    def draw(ax: Any) -> None:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"ROC-AUC {roc_auc_score(y, p):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)

    return curve_plot(draw, ("false positive rate", "true positive rate"), "lower right", title, path)


def pr_plot(y: np.ndarray, p: np.ndarray, title: str, path: Path) -> Path:
    def draw(ax: Any) -> None:
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"PR-AUC {average_precision(y, p):.3f}")
        ax.axhline(y.mean(), ls="--", c="grey", lw=0.8, label=f"base rate {y.mean():.3f}")

    return curve_plot(draw, ("recall", "precision"), "upper right", title, path)


def reliability_plot(y: np.ndarray, p: np.ndarray, title: str, path: Path) -> Path:
    def draw(ax: Any) -> None:
        mean_p, rate, _ = reliability(y, p)
        top = max(mean_p.max(), rate.max()) * 1.05
        ax.plot([0, top], [0, top], ls="--", c="grey", lw=0.8)
        ax.plot(mean_p, rate, marker="o", label=f"Brier {brier_score_loss(y, p):.4f}")

    return curve_plot(draw, ("mean predicted risk (decile)", "observed rate"), "upper left", title, path)


def curve_plot(draw: Callable[[Any], None], labels: tuple[str, str], legend: str, title: str,
               path: Path) -> Path:
    """One small chart of curves: ``draw`` plots them, this labels, titles and saves it."""
    fig = figure(figsize=(4.5, 4))
    ax = fig.subplots()
    draw(ax)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.legend(loc=legend)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def shap_summary_plot(contributions: pd.DataFrame, path: Path) -> Path:
    """Mean |SHAP| per question (bar) and each row's contribution (dots), most influential on top."""
    order = mean_abs(contributions).index[::-1]
    fig = figure(figsize=(11, 6))
    left, right = fig.subplots(1, 2, sharey=True)
    positions = np.arange(len(order))
    left.barh(positions, contributions[order].abs().mean().to_numpy(), color="#c0392b")
    left.set_yticks(positions, list(order))
    left.set_xlabel("mean |SHAP| (log-odds)")
    rng = np.random.default_rng(0)
    for i, name in enumerate(order):
        values = contributions[name].to_numpy()
        right.scatter(values, i + rng.uniform(-0.3, 0.3, len(values)), s=3, alpha=0.3, c="#2c3e50")
    right.axvline(0, c="grey", lw=0.8)
    right.set_xlabel("SHAP contribution per person (log-odds; > 0 raises risk)")
    fig.suptitle(f"What drives the risk: {len(contributions):,} test records, grouped by question")
    return save_figure(fig, path)
