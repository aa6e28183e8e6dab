"""The monitoring report as files: what batch inference writes to ``<home>/monitoring/`` and logs to
its MLflow run.

:func:`save_report` turns one :class:`~heartrisk.monitoring.snapshot.Snapshot` into static PNGs
(matplotlib figures built outside pyplot: no display, no global state, safe in the scheduler's thread)
with CSV/HTML/JSON beside them, so a run in MLflow shows what the dashboard showed on that day. The
dashboard draws the same snapshot live and interactive (:mod:`heartrisk.web.dashboard.charts`). Every
file is written under a temporary name and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from heartrisk.files import atomic_write
from heartrisk.model.plots import figure, save_figure
from heartrisk.monitoring.colours import DRIFTED, SOURCE_COLOURS, STABLE
from heartrisk.monitoring.drift import DriftReport
from heartrisk.monitoring.snapshot import ShapSample, Snapshot, value_codes

METRICS = ("roc_auc", "precision", "recall", "f1")


def save_report(snap: Snapshot, folder: Path) -> list[Path]:
    """Every image and table of the report in ``folder``, then ``summary.json``; returns the paths.

    The snapshot must be of a champion (``snap.model``): batch inference writes one after scoring."""
    version = snap.model["version"]
    counts = snap.predictions
    paths = [
        plot_confusion(np.asarray(snap.confusion_all),
                       f"champion v{version}: all {counts['champion_rows']:,} predictions",
                       folder / "confusion_all.png"),
        plot_confusion(np.asarray(snap.confusion_window),
                       f"champion v{version}: last {snap.hours:g} h ({counts['window_rows']:,} predictions)",
                       folder / "confusion_window.png"),
        save_frame(snap.recent, folder / "recent_predictions.csv"),
        save_recent_table(snap.recent, folder / "recent_predictions.html"),
        save_frame(snap.daily, folder / "performance.csv"),
        plot_performance(snap.daily, folder / "performance.png"),
    ]
    if snap.drift is not None:
        paths += [save_frame(snap.drift.frame(), folder / "drift.csv"),
                  plot_drift(snap.drift, folder / "drift.png")]
    if snap.shap is not None:
        paths.append(plot_shap_summary(
            snap.shap, folder / "shap_summary.png",
            f"SHAP of {len(snap.shap.answers):,} recent rows (Kaggle and synthetic), champion v{version}"))
    summary = folder / "summary.json"
    with atomic_write(summary) as partial:
        partial.write_text(json.dumps(
            {"generated_at": snap.generated_at.isoformat(), "model": snap.model,
             "metrics_all": snap.metrics_all, "metrics_window": snap.metrics_window,
             "drift": snap.drift.to_dict() if snap.drift is not None else None},
            indent=2, default=str))
    return [*paths, summary]


def save_frame(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_write(path) as partial:
        frame.to_csv(partial, index=False)
    return path


def plot_confusion(matrix: np.ndarray, title: str, path: Path) -> Path:
    """Counts with each row's share: true No/Yes down, predicted No/Yes across."""
    fig = figure(figsize=(4.6, 4))
    ax = fig.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)  # shaded by share of the row: the rare class shows
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}\n{shares[i, j]:.0%} of row", ha="center", va="center", fontsize=9,
                color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], ["No", "Yes"])
    ax.set_yticks([0, 1], ["No", "Yes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_recent_table(recent: pd.DataFrame, path: Path) -> Path:
    """The latest predictions as an HTML table (MLflow shows it in the run's artifacts; a table
    image took longer to draw than all the other images together). No user rows: see
    ``recent_predictions``."""
    html = recent.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, na_rep="")
    with atomic_write(path) as partial:
        partial.write_text(f"<h3>recent predictions (user rows are counted, not listed)</h3>\n{html}")
    return path


def swarm_offsets(x: np.ndarray, half_width: float = 0.4, bins: int = 60) -> np.ndarray:
    """Vertical offsets that spread points sharing an x-bin to both sides (a beeswarm's layout)."""
    if len(x) == 0:
        return np.zeros(0)
    low, high = float(np.min(x)), float(np.max(x))
    which = np.zeros(len(x), dtype=int) if high <= low else \
        np.minimum(((x - low) / (high - low) * bins).astype(int), bins - 1)
    rank = pd.Series(which).groupby(which).cumcount().to_numpy()
    signed = np.where(rank % 2 == 0, rank // 2, -(rank // 2 + 1))
    peak = max(np.bincount(which).max() / 2, 1.0)
    return signed * (half_width / peak)


def plot_shap_summary(sample: ShapSample, path: Path, title: str) -> Path:
    """SHAP beeswarm of recent rows: one line per question (most influential on top), a dot per row
    at its contribution, coloured by the answer (low to high in the spec's order; grey = Unknown).

    Drawn with matplotlib directly: ``shap.plots.beeswarm`` looks the same but importing shap costs
    seconds, a large share of a daily run."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable

    contributions = sample.contributions
    codes = value_codes(sample.answers)
    order = contributions.abs().mean().sort_values(ascending=False).index.tolist()
    fig = figure(figsize=(8, 0.9 + 0.36 * len(order)))
    ax = fig.subplots()
    cmap = colormaps["coolwarm"]
    for rank, name in enumerate(order):
        x = contributions[name].to_numpy(dtype=float)
        code = codes[name].to_numpy(dtype=float)
        top = np.nanmax(code) if np.isfinite(code).any() else 0.0
        shade = code / top if top > 0 else np.zeros_like(code)
        colours = np.where(np.isnan(code)[:, None], np.array([[0.6, 0.6, 0.6, 1.0]]), cmap(shade))
        ax.scatter(x, rank + swarm_offsets(x), s=6, c=colours, linewidths=0, rasterized=True)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_xlabel("contribution to the risk (log-odds)")
    bar = fig.colorbar(ScalarMappable(cmap=cmap), ax=ax, ticks=[0, 1], pad=0.02, aspect=40)
    bar.ax.set_yticklabels(["low", "high"])
    bar.set_label("answer")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_performance(daily: pd.DataFrame, path: Path) -> Path:
    """Daily ROC-AUC, precision, recall and F1 per model version, with volume by source below.

    Points and bars sit at noon of their (UTC) day, between the midnight ticks."""
    from matplotlib.dates import DateFormatter, DayLocator

    fig = figure(figsize=(9, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    noon = pd.Timedelta(hours=12)
    for version, rows in daily.groupby("model_version"):
        for metric in METRICS:
            top.plot(rows["day"] + noon, rows[metric], marker="o", label=f"v{version} {metric}")
    top.set_ylim(0, 1)
    top.set_ylabel("score (labelled rows)")
    top.legend(fontsize=7, ncol=4, loc="lower left")
    top.set_title("performance over time (by day of event time, UTC)", fontsize=9)
    sources = [c for c in daily.columns if c.startswith("rows_")]
    volume = daily.groupby("day")[sources].sum()
    bottom_edge = np.zeros(len(volume))
    for column in sources:
        source = column.removeprefix("rows_")
        bottom.bar(volume.index + noon, volume[column], bottom=bottom_edge, width=0.8, label=source,
                   color=SOURCE_COLOURS.get(source))
        bottom_edge += volume[column].to_numpy()
    bottom.set_ylabel("predictions")
    bottom.legend(fontsize=7)
    if len(volume):
        first, last = volume.index.min(), volume.index.max() + pd.Timedelta(days=1)
        bottom.set_xlim(first - pd.Timedelta(days=1), last + pd.Timedelta(days=1))
        bottom.xaxis.set_major_locator(DayLocator(interval=max(1, (last - first).days // 10)))
    bottom.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    return save_figure(fig, path)


def plot_drift(report: DriftReport, path: Path) -> Path:
    """Each feature's drift as a share of its threshold (1 = the flag line)."""
    frame = report.frame()
    ratio = (frame["value"] / frame["threshold"]).fillna(0)
    fig = figure(figsize=(7, 6))
    ax = fig.subplots()
    colours = [DRIFTED if d else STABLE for d in frame["drifted"]]
    ax.barh(frame["feature"], ratio, color=colours)
    ax.axvline(1.0, color="grey", ls="--", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("drift / threshold (Jensen-Shannon for answers, normed Wasserstein for numbers)")
    ax.set_title(f"drift against the training data\n{report.window.note}", fontsize=8)
    return save_figure(fig, path)
