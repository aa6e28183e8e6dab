"""How the champion does on new records: classification metrics, confusion, performance over time.

Pure computations on frames of ``heart_predictions``, so the images batch inference logs to MLflow and
the dashboard say the same thing (both draw from one report, :mod:`heartrisk.monitoring.snapshot`):

- classification metrics and confusion matrices of labelled predictions;
- performance over time: per day (UTC) of ``event_time`` and model version, ROC-AUC, precision,
  recall, F1 and volume by source;
- the latest predictions, never a user's own row.

A frame may carry a ``count`` column: each line then stands for that many identical predictions (the
daft engine's aggregate of a large ``heart_predictions``, :mod:`heartrisk.engine.aggregates`), and
every figure here is the one the expanded rows would give.

Drift is in :mod:`heartrisk.monitoring.drift`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from heartrisk.features import LABEL

#: Column of an aggregated frame: how many identical predictions a line stands for.
COUNT = "count"


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions whose truth is known (the schema allows it to be missing)."""
    return frame[frame[LABEL.name].notna()]


def weights(frame: pd.DataFrame) -> np.ndarray:
    """How many predictions each line stands for (1 each unless the frame is aggregated)."""
    if COUNT in frame:
        return frame[COUNT].to_numpy(dtype=np.int64)
    return np.ones(len(frame), dtype=np.int64)


def ranking_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """ROC-AUC and average precision (PR-AUC) as scikit-learn defines them, from one sort.

    Ties in ``p`` form one step of the curves (scikit-learn's convention); both classes must occur.
    ``w`` counts how many predictions each entry stands for (aggregated frames).
    """
    w = np.ones(len(y), dtype=np.int64) if w is None else w
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted, w_sorted = y[order], p[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]  # end of each tie group
    tp = np.cumsum(y_sorted * w_sorted)[last].astype(float)
    fp = np.cumsum(w_sorted)[last] - tp
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    precision = tp / (tp + fp)
    return {"roc_auc": float(np.trapezoid(tpr, fpr)),
            "pr_auc": float(np.sum(np.diff(tpr) * precision))}


def classification_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of the labelled predictions in ``frame`` (probability, prediction, truth).

    Decisions are the stored ``prediction`` column, so what was said is what is judged. Empty when
    nothing is labelled; ROC-AUC and PR-AUC are NaN while only one class has been seen.
    """
    rows = labelled(frame)
    if rows.empty:
        return {}
    y = rows[LABEL.name].astype(bool).to_numpy()
    p = rows["probability"].to_numpy(dtype=float)
    decided = rows["prediction"].astype(bool).to_numpy()
    w = weights(rows)
    n = int(w.sum())
    both = bool(y.any() and not y.all())
    # Counts by hand: scikit-learn's per-call input checks cost more than the metrics on 300k rows.
    tp = int(w[y & decided].sum())
    fp = int(w[~y & decided].sum())
    fn = int(w[y & ~decided].sum())
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "rows": n,
        **(ranking_metrics(y, p, w) if both else {"roc_auc": math.nan, "pr_auc": math.nan}),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / n,
        "brier": float(np.sum(w * (p - y) ** 2) / n),
        "positive_rate": float(w[y].sum() / n),
        "predicted_positive_rate": float(w[decided].sum() / n),
        "mean_probability": float(np.sum(w * p) / n),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def confusion(frame: pd.DataFrame) -> np.ndarray:
    """2×2 counts of labelled predictions: rows true No/Yes, columns predicted No/Yes."""
    rows = labelled(frame)
    y = rows[LABEL.name].astype(bool).to_numpy()
    decided = rows["prediction"].astype(bool).to_numpy()
    w = weights(rows)
    return np.array([[w[~y & ~decided].sum(), w[~y & decided].sum()],
                     [w[y & ~decided].sum(), w[y & decided].sum()]], dtype=int)


def day_of(times: pd.Series) -> pd.Series:
    """The UTC day of each timestamp (as a midnight timestamp, so plots get a date axis)."""
    return pd.to_datetime(times, utc=True).dt.floor("D")


def instants(times: pd.Series) -> np.ndarray:
    """Timestamps as integers (UTC), for sorting without boxing each value."""
    return pd.to_datetime(times, utc=True).dt.tz_localize(None).to_numpy().astype("int64")


def daily_performance(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (day of event_time, model_version): volume by source and the day's metrics."""
    columns = ["day", "model_version", "rows", "labelled", "positive_rate", "mean_probability",
               "roc_auc", "precision", "recall", "f1"]
    if predictions.empty:
        return pd.DataFrame(columns=columns)
    frame = predictions.assign(day=day_of(predictions["event_time"]))
    out = []
    for (day, version), group in frame.groupby(["day", "model_version"], sort=True):
        metrics = classification_metrics(group)
        w = weights(group)
        row = {"day": day, "model_version": version, "rows": int(w.sum()),
               "labelled": int(w[group[LABEL.name].notna().to_numpy()].sum()),
               "positive_rate": metrics.get("positive_rate", math.nan),
               "mean_probability": float(np.sum(w * group["probability"].to_numpy(dtype=float)) / w.sum()),
               **{k: metrics.get(k, math.nan) for k in ("roc_auc", "precision", "recall", "f1")}}
        by_source = pd.Series(w, index=group["source"].to_numpy()).groupby(level=0).sum()
        row.update({f"rows_{s}": int(n) for s, n in by_source.items() if n})
        out.append(row)
    table = pd.DataFrame(out)
    sources = sorted(c for c in table.columns if c.startswith("rows_"))
    table[sources] = table[sources].fillna(0).astype(int)
    return table[columns + sources]


def volume_by_day(frame: pd.DataFrame, time_column: str = "event_time") -> pd.DataFrame:
    """Rows per UTC day (index) and source (columns), zero where a source had none."""
    if frame.empty:
        return pd.DataFrame(dtype=int)
    counts = (frame.assign(day=day_of(frame[time_column]))
              .groupby(["day", "source"]).size().unstack("source", fill_value=0))
    counts.columns.name = None
    return counts.sort_index()


def recent_predictions(predictions: pd.DataFrame, rows: int = 50) -> pd.DataFrame:
    """The latest predictions for the recent-predictions table, never a user's own row.

    A row of ``heart_predictions`` holds no answers, but a user row's record id, time and diagnosis
    still describe one person, so user rows are left out here and only counted in the aggregates
    (volume, metrics, drift). Record ids are kept for Kaggle and synthetic rows, which are public.
    """
    shown = predictions[predictions["source"] != "user"]
    # Newest first by (predicted_at, event_time): one lexsort of two integer columns, not a frame sort.
    order = np.lexsort((instants(shown["event_time"]), instants(shown["predicted_at"])))
    shown = shown.iloc[order[::-1][:rows]]
    return shown[["event_time", "predicted_at", "record_id", "source", "model_version",
                  "probability", "prediction", LABEL.name]].reset_index(drop=True)
