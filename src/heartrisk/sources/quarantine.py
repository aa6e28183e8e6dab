"""The daily merge's check: implausible submissions are quarantined instead of merged into ``heart``.

Shared outcomes feed training, so the merge does not take them on trust. A pending submission is
quarantined when

* it is **out of spec**: a value the feature spec refuses (the store checks every insert, so this
  catches rows written under an older spec or by another writer);
* it has **no answers**: all 17 questions Unknown, only a diagnosis (it can only move the base rate,
  which is what a cheap flood would aim at);
* it is an **exact repeat in bulk**: the same 17 answers and diagnosis stored more than
  ``max_repeats_per_day`` times on one (UTC) day. Every copy of such a group is quarantined, the
  ones already merged earlier that day stay.

Quarantined rows are kept whole, with the reason and the time, in the feature group
``heart_user_quarantine`` (:data:`heartrisk.store.groups.QUARANTINE`; nothing is lost; an operator
can read them; ``heartrisk forget`` removes them too). A submission is merged or quarantined, never
both: the merge leaves out every id that is in quarantine, and the quarantine insert is keyed by
``submission_id`` like every other write, so a killed run re-run does not quarantine a row twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.clock import as_utc
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.store.groups import HEART_USER, QUARANTINE, open_group
from heartrisk.validation import coerce

OUT_OF_SPEC = "out of spec"
NO_ANSWERS = "no answers"
REPEATED = "repeated"
REASONS = (OUT_OF_SPEC, NO_ANSWERS, REPEATED)


class QuarantineSettings(BaseModel):
    """How suspicious the merge is. ``max_repeats_per_day`` identical submissions a day are fine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_repeats_per_day: int = Field(
        default=5, ge=1, description="more identical (answers + diagnosis) submissions on one day are "
                                     "quarantined, every copy")
    quarantine_empty: bool = Field(default=True, description="quarantine submissions with no answer")


# ---------------------------------------------------------------------------------------- rules
def out_of_spec(frame: pd.DataFrame) -> pd.Series:
    """Per row: the first value the feature spec refuses (``"bmi 500.0 is out of range…"``), or None."""
    reasons = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if frame.empty:
        return reasons
    checked = coerce(frame[[*FEATURE_NAMES, LABEL.name]].reset_index(drop=True), label="required")
    for problem in reversed(checked.problems):  # reversed: the first problem of a row wins
        if problem.row is not None:
            reasons.iat[problem.row] = f"{OUT_OF_SPEC}: {problem.column} {problem.value!r} {problem.reason}"
    return reasons


def no_answers(frame: pd.DataFrame) -> pd.Series:
    """Per row: True when every one of the 17 answers is Unknown."""
    return frame[list(FEATURE_NAMES)].isna().all(axis=1)


def _fingerprints(frame: pd.DataFrame) -> pd.Series:
    """One string per row: the UTC day it was submitted, its answers and its diagnosis."""
    day = pd.to_datetime(frame["submitted_at"], utc=True).dt.strftime("%Y-%m-%d")
    values = frame[[*FEATURE_NAMES, LABEL.name]].astype(object).where(frame[[*FEATURE_NAMES, LABEL.name]]
                                                                      .notna(), "?").astype(str)
    return day.str.cat([values[c] for c in values.columns], sep="\x1f")


def bulk_repeats(pending: pd.DataFrame, everything: pd.DataFrame, max_per_day: int) -> pd.Series:
    """Per pending row: ``"repeated: … N times on DAY"`` if its (day, answers, diagnosis) group among
    all stored submissions is larger than ``max_per_day``, else None."""
    reasons = pd.Series([None] * len(pending), index=pending.index, dtype=object)
    if pending.empty:
        return reasons
    counts = Counter(_fingerprints(everything))
    mine = _fingerprints(pending)
    for i, fingerprint in enumerate(mine):
        n = counts.get(fingerprint, 0)
        if n > max_per_day:
            reasons.iat[i] = (f"{REPEATED}: the same answers and diagnosis {n} times on "
                              f"{fingerprint.split(chr(31), 1)[0]} (at most {max_per_day} a day are merged)")
    return reasons


def reasons_for(pending: pd.DataFrame, everything: pd.DataFrame, qs: QuarantineSettings) -> pd.Series:
    """Per pending row: why it is quarantined, or None to merge it (first rule that applies)."""
    reasons = out_of_spec(pending)
    if qs.quarantine_empty:
        empty = no_answers(pending).to_numpy() & reasons.isna().to_numpy()
        reasons[empty] = NO_ANSWERS
    repeats = bulk_repeats(pending, everything, qs.max_repeats_per_day)
    fill = reasons.isna() & repeats.notna()
    reasons[fill] = repeats[fill]
    return reasons


# ---------------------------------------------------------------------------------------- the step
def quarantined_ids(settings: Settings) -> set[str]:
    group = open_group(settings, QUARANTINE)
    if not group.exists():
        return set()
    return set(group.read_arrow(columns=["submission_id"]).column("submission_id").to_pylist())


def quarantine_pending(settings: Settings, pending: pd.DataFrame, now: datetime,
                       qs: QuarantineSettings | None = None) -> tuple[pd.DataFrame, int]:
    """Split the merge's pending submissions: returns (those to merge, how many were quarantined now).

    Ids already in quarantine (an earlier run's verdict) are left out of the merge and not counted
    again; the newly quarantined rows go to ``heart_user_quarantine`` in one commit, before the merge.
    """
    qs = qs or QuarantineSettings()
    if pending.empty:
        return pending, 0
    pending = pending[~pending["submission_id"].isin(quarantined_ids(settings))]
    if pending.empty:
        return pending.reset_index(drop=True), 0
    everything = open_group(settings, HEART_USER).read(columns=["submitted_at", *FEATURE_NAMES, LABEL.name])
    reasons = reasons_for(pending.reset_index(drop=True), everything, qs)
    held = reasons.notna().to_numpy()
    if held.any():
        rows = pending.reset_index(drop=True)[held].copy()
        rows["quarantined_at"] = as_utc(pd.Timestamp(now))
        rows["reason"] = reasons[held].to_numpy()
        open_group(settings, QUARANTINE).insert(rows[QUARANTINE.columns])
    return pending.reset_index(drop=True)[~held].reset_index(drop=True), int(held.sum())


def quarantine_status(settings: Settings) -> dict[str, Any]:
    """For ``heartrisk status``: rows held, by rule, and when the last one was quarantined."""
    group = open_group(settings, QUARANTINE)
    if not group.exists():
        return {"rows": 0}
    table = group.read_arrow(columns=["reason", "quarantined_at"])
    reasons = pd.Series(table.column("reason").to_pylist(), dtype=object)
    by_rule = {rule: int(reasons.str.startswith(rule).sum()) for rule in REASONS}
    last = table.column("quarantined_at").to_pandas().max() if table.num_rows else None
    return {"rows": table.num_rows, "by_rule": by_rule, "table": QUARANTINE.table_name,
            "last": None if last is None or pd.isna(last) else last.isoformat()}
