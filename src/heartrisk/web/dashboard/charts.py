"""The dashboard's interactive charts (plotly), drawn from a :class:`~heartrisk.monitoring.snapshot.Snapshot`.

Each function returns a plotly figure; the page embeds them with the plotly.js bundled in the plotly
package (served by the app itself, so the dashboard works offline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from heartrisk.features import BY_NAME, FEATURE_NAMES
from heartrisk.monitoring.colours import DRIFTED, METRIC_COLOURS, SOURCE_COLOURS, STABLE
from heartrisk.monitoring.snapshot import Snapshot, value_codes

LAYOUT = {"margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "template": "plotly_white",
          "font": {"size": 12}}


def confusion_figure(snap: Snapshot) -> go.Figure:
    """All of the champion's labelled predictions beside those of the recent window."""
    titles = ("all predictions", f"last {snap.hours:g} h")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.15)
    for col, matrix in enumerate((snap.confusion_all, snap.confusion_window), start=1):
        counts = np.asarray(matrix)
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
        text = [[f"{counts[i, j]:,}<br>{shares[i, j]:.0%} of row" for j in range(2)] for i in range(2)]
        fig.add_trace(go.Heatmap(
            z=shares, x=["predicted No", "predicted Yes"], y=["true No", "true Yes"], text=text,
            texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(height=330, **LAYOUT)
    return fig


def performance_figure(snap: Snapshot) -> go.Figure:
    """Daily ROC-AUC, precision, recall, F1 per model version; predictions per day by source."""
    daily = snap.daily
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38],
                        vertical_spacing=0.08,
                        subplot_titles=("labelled predictions, by day of event time (UTC)",
                                        "predictions per day, by source"))
    if daily.empty:
        fig.update_layout(height=460, **LAYOUT)
        return fig
    versions = sorted(daily["model_version"].unique(), key=lambda v: (len(str(v)), str(v)))
    dash = ["solid", "dot", "dash", "dashdot"]
    for k, version in enumerate(versions):
        rows = daily[daily["model_version"] == version]
        for metric, colour in METRIC_COLOURS.items():
            fig.add_trace(go.Scatter(
                x=rows["day"], y=rows[metric], mode="lines+markers", name=f"v{version} {metric}",
                line={"color": colour, "dash": dash[k % len(dash)]},
                customdata=rows[["labelled"]].to_numpy(),
                hovertemplate=f"v{version} {metric}: %{{y:.3f}}<br>%{{x|%Y-%m-%d}}, "
                              "%{customdata[0]:,} labelled rows<extra></extra>"), row=1, col=1)
    sources = [c for c in daily.columns if c.startswith("rows_")]
    volume = daily.groupby("day")[sources].sum()
    for column in sources:
        source = column.removeprefix("rows_")
        fig.add_trace(go.Bar(x=volume.index, y=volume[column], name=source,
                             marker_color=SOURCE_COLOURS.get(source), legendgroup="volume"), row=2, col=1)
    fig.update_layout(barmode="stack", height=520, **LAYOUT)
    fig.update_yaxes(range=[0, 1.02], title_text="score", row=1, col=1)
    fig.update_yaxes(title_text="rows", row=2, col=1)
    return fig


def volume_figure(snap: Snapshot) -> go.Figure:
    """Rows of ``heart`` per day and source: what came in (Kaggle backfill, synthetic, users)."""
    fig = go.Figure()
    for source in snap.volume.columns:
        fig.add_trace(go.Bar(x=snap.volume.index, y=snap.volume[source], name=str(source),
                             marker_color=SOURCE_COLOURS.get(str(source))))
    fig.update_layout(barmode="group", height=320, yaxis_title="rows", yaxis_type="log", yaxis_dtick=1,
                      title="rows added to heart per day, by source (log scale)", **LAYOUT)
    return fig


def drift_figure(snap: Snapshot) -> go.Figure:
    """Each feature's drift as a share of its threshold: past 1 is flagged."""
    fig = go.Figure()
    if snap.drift is None:
        return fig
    frame = snap.drift.frame()
    ratio = (frame["value"] / frame["threshold"]).fillna(0)
    fig.add_trace(go.Bar(
        x=ratio, y=frame["feature"], orientation="h",
        marker_color=[DRIFTED if d else STABLE for d in frame["drifted"]],
        customdata=frame[["method", "value", "threshold"]].to_numpy(),
        hovertemplate="%{y}: %{customdata[0]} %{customdata[1]:.4f} "
                      "(threshold %{customdata[2]})<extra></extra>"))
    fig.add_vline(x=1, line_dash="dash", line_color="grey")
    fig.update_layout(height=520, xaxis_title="drift ÷ threshold", yaxis_autorange="reversed",
                      title="drift against the training data", **LAYOUT)
    return fig


def probability_figure(snap: Snapshot) -> go.Figure:
    """The champion's predicted risk on its training data and on the recent window.

    Binned here (2-point bins), so the page carries 50 numbers per side, not every prediction."""
    fig = go.Figure()
    edges = np.linspace(0, 1, 51)
    centres = (edges[:-1] + edges[1:]) / 2
    for values, name, colour in ((snap.probability_reference, "training data", "#8c8c8c"),
                                 (snap.probability_window, "recent window", "#4c72b0")):
        counts, _ = np.histogram(np.clip(values, 0, 1), bins=edges)
        share = counts / max(counts.sum(), 1) * 100
        fig.add_trace(go.Bar(x=centres, y=share, width=0.02, name=f"{name} ({len(values):,})",
                             marker_color=colour, opacity=0.6,
                             hovertemplate="risk %{x:.2f}: %{y:.1f} % of rows<extra></extra>"))
    if snap.model:
        fig.add_vline(x=snap.model["threshold"], line_dash="dash", line_color="#c44e52",
                      annotation_text="threshold")
    fig.update_layout(barmode="overlay", height=320, xaxis_title="predicted risk",
                      yaxis_title="% of rows", title="predicted risk", **LAYOUT)
    return fig


def shap_figure(snap: Snapshot) -> go.Figure:
    """A beeswarm: one dot per recent row and question, placed by its contribution, coloured by
    the answer (low to high in the spec's order); hover shows the answer."""
    fig = go.Figure()
    if snap.shap is None:
        return fig
    contributions, answers = snap.shap.contributions, snap.shap.answers
    codes = value_codes(answers)
    order = contributions.abs().mean().sort_values(ascending=False).index.tolist()
    rng = np.random.default_rng(0)
    for rank, name in enumerate(order):
        code = codes[name]
        top = code.max()
        colour = (code / top if top and np.isfinite(top) else code).to_numpy()
        text = answers[name].map(lambda v: "Unknown" if pd.isna(v) else str(v))
        y = rank + rng.uniform(-0.28, 0.28, len(contributions))
        fig.add_trace(go.Scattergl(
            x=contributions[name], y=y, mode="markers", name=name, showlegend=False, text=text,
            marker={"size": 4, "color": colour, "colorscale": "Bluered", "cmin": 0, "cmax": 1,
                    "showscale": rank == 0, "colorbar": {"title": "answer", "tickvals": [0, 1],
                                                         "ticktext": ["low", "high"]}},
            hovertemplate=f"{name} = %{{text}}<br>contribution %{{x:+.3f}} log-odds<extra></extra>"))
    fig.update_yaxes(tickvals=list(range(len(order))), ticktext=order, autorange="reversed")
    fig.add_vline(x=0, line_color="grey")
    fig.update_layout(height=80 + 28 * len(order), xaxis_title="contribution to the risk (log-odds)",
                      title=f"SHAP of {len(contributions):,} recent rows", **LAYOUT)
    return fig


def question(name: str) -> str:
    """The question behind a feature (or the model output), for tooltips."""
    return BY_NAME[name].question if name in FEATURE_NAMES else "the champion's predicted risk"
