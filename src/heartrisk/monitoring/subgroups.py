"""Subgroups and calibration: how the model does for each sex, age band and race, and whether its
risks still mean what they say (model-card practice).

Pure computations on labelled rows (truth ``heart_disease``, ``probability`` and the three answers),
shared by the monitoring report (labelled predictions joined with their answers) and the training
gate (:mod:`heartrisk.model.gate`, the candidate and the champion on the same test records).
A subgroup with fewer than :data:`MIN_ROWS` rows or :data:`MIN_POSITIVES` cases is listed with its
counts but no ranking metrics: its ROC-AUC would move by more than the gaps that matter.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from heartrisk.features import LABEL
from heartrisk.monitoring.metrics import day_of, ranking_metrics

#: The answers that define subgroups.
ATTRIBUTES: tuple[str, ...] = ("sex", "age_group", "race")
#: Age bands of the 13 age categories (fewer, larger groups: the 80+ band alone is ~7 % of rows).
AGE_BANDS: dict[str, str] = {
    **dict.fromkeys(("18-24", "25-29", "30-34", "35-39", "40-44"), "18-44"),
    **dict.fromkeys(("45-49", "50-54", "55-59", "60-64"), "45-64"),
    **dict.fromkeys(("65-69", "70-74", "75-79"), "65-79"),
    "80 or older": "80+",
}
MIN_ROWS = 200
MIN_POSITIVES = 20


def with_age_group(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with an ``age_group`` column (the band of ``age_category``; Unknown stays missing)."""
    return frame.assign(age_group=frame["age_category"].map(AGE_BANDS))


def group_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Rows, cases, ROC-AUC, PR-AUC (NaN when too small), observed and mean predicted rate, Brier."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    positives = int(y.sum())
    enough = len(y) >= MIN_ROWS and min(positives, len(y) - positives) >= MIN_POSITIVES
    ranking = ranking_metrics(y, p) if enough else {"roc_auc": math.nan, "pr_auc": math.nan}
    return {"rows": len(y), "positives": positives, **ranking,
            "observed_rate": float(y.mean()) if len(y) else math.nan,
            "predicted_rate": float(p.mean()) if len(p) else math.nan,
            "brier": float(np.mean((p - y) ** 2)) if len(y) else math.nan}


def subgroup_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (attribute, group) of labelled rows: the :func:`group_metrics`."""
    frame = with_age_group(frame[frame[LABEL.name].notna()])
    rows = []
    for attribute in ATTRIBUTES:
        for group, part in frame.groupby(attribute, sort=True):
            rows.append({"attribute": attribute, "group": str(group),
                         **group_metrics(part[LABEL.name].to_numpy(dtype=bool),
                                         part["probability"].to_numpy(dtype=float))})
    columns = ["attribute", "group", "rows", "positives", "roc_auc", "pr_auc", "observed_rate",
               "predicted_rate", "brier"]
    return pd.DataFrame(rows, columns=columns)


def subgroups_by_day(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`subgroup_table` per UTC day of ``event_time`` (subgroups over time)."""
    labelled = frame[frame[LABEL.name].notna()]
    if labelled.empty:
        return pd.DataFrame(columns=["day", *subgroup_table(labelled).columns])
    parts = [subgroup_table(part).assign(day=day)
             for day, part in labelled.groupby(day_of(labelled["event_time"]), sort=True)]
    table = pd.concat(parts, ignore_index=True)
    return table[["day", *table.columns[:-1]]]


def calibration_by_day(frame: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day: labelled rows, observed rate and mean predicted risk (calibration over time)."""
    labelled = frame[frame[LABEL.name].notna()]
    columns = ["day", "rows", "observed_rate", "predicted_rate"]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    grouped = labelled.assign(day=day_of(labelled["event_time"]),
                              y=labelled[LABEL.name].astype(float)).groupby("day", sort=True)
    return pd.DataFrame({"rows": grouped.size(), "observed_rate": grouped["y"].mean(),
                         "predicted_rate": grouped["probability"].mean()}).reset_index()[columns]


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted risk against the observed rate in quantile bins of the risk (a reliability
    diagram; quantile bins, because most risks are below 0.2 and uniform bins would be near empty)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(p) == 0:
        return pd.DataFrame(columns=["bin", "rows", "predicted", "observed"])
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    index = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, max(len(edges) - 2, 0))
    frame = pd.DataFrame({"bin": index, "p": p, "y": y}).groupby("bin")
    return pd.DataFrame({"rows": frame.size(), "predicted": frame["p"].mean(),
                         "observed": frame["y"].mean()}).reset_index()


def worst_gap(table: pd.DataFrame) -> dict[str, object]:
    """The largest gap between a subgroup's ROC-AUC and the best group's of the same attribute."""
    best: dict[str, object] = {"gap": 0.0, "attribute": None, "group": None}
    for attribute, part in table.dropna(subset=["roc_auc"]).groupby("attribute"):
        gap = float(part["roc_auc"].max() - part["roc_auc"].min())
        if gap > float(best["gap"]):  # type: ignore[arg-type]
            worst = part.loc[part["roc_auc"].idxmin()]
            best = {"gap": gap, "attribute": attribute, "group": worst["group"]}
    return best
