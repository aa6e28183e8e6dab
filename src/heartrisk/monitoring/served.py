"""The served population: who the web server answered (from the serving profile), how far they are
from the training data, and how the model is likely doing for them.

- :func:`served_drift`: today's drift measures (:mod:`heartrisk.monitoring.drift`) between the
  champion's reference sample and the profile's counts of a recent window. Both sides are put in the
  profile's bins first (numbers of width 1, risk of width 0.01), so neither side is finer than the other.
- :func:`estimated_by_day`: CBPE per day (:mod:`heartrisk.monitoring.estimated`).
- :func:`profile_table`: the counts as the page and the API show them, below 10 as "<10".
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from heartrisk.features import BY_NAME, FEATURE_NAMES, FEATURES
from heartrisk.model.reliability import Reliability
from heartrisk.monitoring.drift import PROBABILITY, DriftReport, DriftSettings, Window, drift_report
from heartrisk.monitoring.estimated import METRICS, estimate
from heartrisk.monitoring.served_profile import RISK, SMALL_COUNT, answer_bin, bin_value, shown_count


def binned_reference(reference: pd.DataFrame) -> pd.DataFrame:
    """The reference sample in the profile's bins (answers unchanged, numbers and risk binned)."""
    out = {}
    for f in FEATURES:
        if f.is_numeric:
            out[f.name] = [bin_value(f, answer_bin(f, v)) for v in reference[f.name]]
        else:
            out[f.name] = reference[f.name]
    frame = pd.DataFrame(out)
    for f in FEATURES:
        if f.is_numeric:
            frame[f.name] = frame[f.name].astype(float)
    if PROBABILITY in reference:
        p = reference[PROBABILITY].to_numpy(dtype=float)
        frame[PROBABILITY] = np.clip(np.floor(p * 100), 0, 99) / 100 + 0.005
    return frame


def expanded(profile: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """A frame that holds each counted answer ``count`` times, column by column (scaled down to
    ``max_rows`` when larger: the drift measures compare shares, not totals)."""
    requests = int(profile.loc[profile["question"] == RISK, "count"].sum())
    scale = min(1.0, max_rows / requests) if requests else 1.0
    columns: dict[str, pd.Series] = {}
    for question in (*FEATURE_NAMES, RISK):
        part = profile[profile["question"] == question]
        counts = np.round(part["count"].to_numpy(dtype=float) * scale).astype(int)
        if question == RISK:
            values = [float(a) + 0.005 for a in part["answer"]]
            columns[PROBABILITY] = pd.Series(np.repeat(values, counts), dtype=float)
            continue
        f = BY_NAME[question]
        values = [bin_value(f, a) for a in part["answer"]]
        series = pd.Series(np.repeat(np.array(values, dtype=object), counts))
        columns[question] = series.astype(float) if f.is_numeric else series.where(series.notna(), None)
    length = max((len(s) for s in columns.values()), default=0)
    return pd.DataFrame({k: v.reindex(range(length)) for k, v in columns.items()})


def served_window(profile: pd.DataFrame, end: date, config: DriftSettings) -> tuple[pd.DataFrame, Window]:
    """The profile's last day before ``end``, pooled back a day at a time until it holds
    ``min_rows`` requests (at most ``max_days``), as today's drift window is."""
    per_day = profile[profile["question"] == RISK].groupby("day")["count"].sum()
    end_ts = pd.Timestamp(end)
    days, rows = 1, 0
    for days in range(1, config.max_days + 1):
        start = end_ts - pd.Timedelta(days=days)
        rows = int(per_day[(per_day.index >= start) & (per_day.index < end_ts)].sum())
        if rows >= config.min_rows:
            break
    start = end_ts - pd.Timedelta(days=days)
    inside = profile[(profile["day"] >= start) & (profile["day"] < end_ts)]
    window = Window(start=start.to_pydatetime(), end=end_ts.to_pydatetime(), rows=rows,
                    requested_hours=24, enough=rows >= config.min_rows, pooled_days=days - 1)
    return inside, window


def served_drift(reference: pd.DataFrame, profile: pd.DataFrame, end: date,
                 config: DriftSettings | None = None) -> DriftReport | None:
    """Drift of the served population (a recent window of the profile) against the reference sample;
    None when fewer than 10 people were served in ``max_days`` (their shares of Unknown and their
    distances would describe each of them)."""
    config = config or DriftSettings()
    inside, window = served_window(profile, end, config)
    if window.rows < SMALL_COUNT:
        return None
    current = expanded(inside, config.max_rows).assign(source="served")
    report = drift_report(binned_reference(reference), current, window, config)
    return DriftReport(window=report.window, rows=report.rows, sources={"served": window.rows})


def estimated_by_day(profile: pd.DataFrame, draws: int = 2000,
                     reliability: Reliability | None = None) -> pd.DataFrame:
    """Per day and model version: requests, flagged share and the CBPE estimates with intervals,
    recalibrated on the version's reliability table when given (the profile is one version's then)."""
    risk = profile[profile["question"] == RISK]
    rows = []
    for (day, version), cells in risk.groupby(["day", "model_version"], sort=True):
        found = estimate(cells, draws=draws, reliability=reliability)
        row: dict[str, Any] = {"day": day, "model_version": version, "requests": int(cells["count"].sum()),
                               "flagged": int(cells.loc[cells["flagged"], "count"].sum())}
        for name in METRICS:
            row[name], row[f"{name}_low"], row[f"{name}_high"] = (found[name].value, found[name].low,
                                                                 found[name].high)
        rows.append(row)
    columns = ["day", "model_version", "requests", "flagged",
               *(f"{m}{s}" for m in METRICS for s in ("", "_low", "_high"))]
    return pd.DataFrame(rows, columns=columns)


def card_reliability(card: dict[str, Any] | None) -> Reliability | None:
    """The reliability table a version's model card carries (None for versions trained before it)."""
    table = (card or {}).get("reliability_at_threshold")
    return Reliability.from_dict(table) if table else None


def profile_table(profile: pd.DataFrame) -> list[dict[str, Any]]:
    """Answers per question (all days and versions summed), counts below 10 shown as "<10"."""
    if profile.empty:
        return []
    summed = profile.groupby(["question", "answer"], as_index=False)["count"].sum()
    order = {name: i for i, name in enumerate((*FEATURE_NAMES, RISK))}
    summed = summed.assign(_q=summed["question"].map(order)).sort_values(["_q", "answer"])
    return [{"question": q, "answer": a, "count": shown_count(int(c))}
            for q, a, c in summed[["question", "answer", "count"]].itertuples(index=False)]


def requests_table(profile: pd.DataFrame) -> list[dict[str, Any]]:
    """Requests answered per day, small counts suppressed."""
    risk = profile[profile["question"] == RISK]
    per_day = risk.groupby("day")["count"].sum()
    return [{"day": pd.Timestamp(d).date().isoformat(), "requests": shown_count(int(c))}
            for d, c in per_day.items()]


def suppressed_estimates(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The daily estimates for display: request counts below 10 as "<10", and no rates for such a
    day (a rate of a handful of people says too much about each of them)."""
    out = []
    for row in table.to_dict(orient="records"):
        small = row["requests"] < 10
        shown = {"day": pd.Timestamp(row["day"]).date().isoformat(), "model_version": row["model_version"],
                 "requests": shown_count(int(row["requests"])), "flagged": shown_count(int(row["flagged"]))}
        for key, value in row.items():
            if key not in shown and key != "day":
                shown[key] = None if small or not np.isfinite(value) else float(value)
        out.append(shown)
    return out


def today_end(now: datetime) -> date:
    """The first day after ``now``'s day: windows end there so today's counts are included."""
    return (now + timedelta(days=1)).date()

