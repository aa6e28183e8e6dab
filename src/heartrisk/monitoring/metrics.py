"""How the champion does on new records: classification metrics, confusion, performance over time.

Pure computations on frames of ``heart_predictions``, so the images batch inference logs to MLflow and
the dashboard say the same thing (both draw from one report, :mod:`heartrisk.monitoring.snapshot`):

- classification metrics and confusion matrices of labelled predictions;
- performance over time: per day (UTC) of ``event_time`` and model version, ROC-AUC, precision,
  recall, F1 and volume by source;
- the latest predictions, never a user's own row.

Drift is in :mod:`heartrisk.monitoring.drift`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from heartrisk.features import LABEL


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions whose truth is known (the schema allows it to be missing)."""
    return frame[frame[LABEL.name].notna()]


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC and average precision (PR-AUC) as scikit-learn defines them, from one sort.

    Ties in ``p`` form one step of the curves (scikit-learn's convention); both classes must occur.
    """
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]  # end of each tie group
    tp = np.cumsum(y_sorted)[last].astype(float)
    fp = (last + 1) - tp
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
    both = bool(y.any() and not y.all())
    # Counts by hand: scikit-learn's per-call input checks cost more than the metrics on 300k rows.
    tp = int(np.sum(y & decided))
    fp = int(np.sum(~y & decided))
    fn = int(np.sum(y & ~decided))
    tn = len(y) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "rows": len(rows),
        **(ranking_metrics(y, p) if both else {"roc_auc": math.nan, "pr_auc": math.nan}),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / len(y),
        "brier": float(np.mean((p - y) ** 2)),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(decided.mean()),
        "mean_probability": float(p.mean()),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def confusion(frame: pd.DataFrame) -> np.ndarray:
    """2×2 counts of labelled predictions: rows true No/Yes, columns predicted No/Yes."""
    rows = labelled(frame)
    y = rows[LABEL.name].astype(bool).to_numpy()
    decided = rows["prediction"].astype(bool).to_numpy()
    return np.array([[np.sum(~y & ~decided), np.sum(~y & decided)],
                     [np.sum(y & ~decided), np.sum(y & decided)]], dtype=int)


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
        row = {"day": day, "model_version": version, "rows": len(group),
               "labelled": int(group[LABEL.name].notna().sum()),
               "positive_rate": metrics.get("positive_rate", math.nan),
               "mean_probability": float(group["probability"].mean()),
               **{k: metrics.get(k, math.nan) for k in ("roc_auc", "precision", "recall", "f1")}}
        row.update({f"rows_{s}": int(n) for s, n in group["source"].value_counts().items()})
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
