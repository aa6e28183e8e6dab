"""Which rows of ``heart`` a model learned from, kept as tags on its registry version, and the rule that
tells whether one given row was among them (`heartrisk forget` asks it about a person's row).

Why not just the table version a model read: `heartrisk forget` purges the table's history, so that
version can no longer be read back to check, and a model's training side is a seeded hash split of
the rows, not all of them. What is recorded at train time is enough to decide from the row alone:

* the table version and the sources read (the synthesizer leaves shared submissions out by default);
* the split's seed, test share and key (``record``: the record id; ``profile``: the row's 17 answers,
  the default since issue 16): a row on the test side was never learned from
  (:func:`heartrisk.store.view.hash_fraction` puts a key on the same side every time);
* how many user rows were on the training side and the latest ``event_time`` among them. User rows
  get their merge time as ``event_time`` (the daily job), so a user row with a later time was merged
  after the read and cannot have been learned from; one with an earlier or equal time on the
  training side was (or, for a sampled fit, may have been: the rule errs towards "learned from");
* for the synthesizer, the earliest submission time a fit accepted (consent scope), if any.

Versions registered before lineage was recorded have no such tags: :func:`may_hold_untagged` then
says "learned from" for every row merged before the version was registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from heartrisk.clock import as_utc
from heartrisk.store.table import FeatureGroup
from heartrisk.store.view import hash_fraction, profile_key

PREFIX = "lineage_"


@dataclass(frozen=True)
class Lineage:
    """What a model version was trained on (see the module docstring)."""

    group: str
    table_version: int
    sources: tuple[str, ...]
    split_seed: int
    test_size: float
    user_rows: int = 0
    user_until: datetime | None = None
    submissions_from: datetime | None = None
    #: What the split hashed; versions recorded before the grouped split carry no tag: ``record``.
    split_by: str = "record"

    def to_tags(self) -> dict[str, str]:
        tags = {"group": self.group, "table_version": str(self.table_version),
                "sources": ",".join(self.sources), "split_seed": str(self.split_seed),
                "test_size": repr(self.test_size), "user_rows": str(self.user_rows),
                "split_by": self.split_by}
        if self.user_until is not None:
            tags["user_until"] = as_utc(self.user_until).isoformat()
        if self.submissions_from is not None:
            tags["submissions_from"] = as_utc(self.submissions_from).isoformat()
        return {PREFIX + k: v for k, v in tags.items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage | None:
        """The lineage recorded on a version, or None if it has none (registered before lineage)."""
        mine = {k.removeprefix(PREFIX): v for k, v in tags.items() if k.startswith(PREFIX)}
        if not mine:
            return None
        until, since = mine.get("user_until"), mine.get("submissions_from")
        return cls(group=mine.get("group", ""), table_version=int(mine.get("table_version", -1)),
                   sources=tuple(s for s in mine.get("sources", "").split(",") if s),
                   split_seed=int(mine["split_seed"]), test_size=float(mine["test_size"]),
                   user_rows=int(mine.get("user_rows", 0)), split_by=mine.get("split_by", "record"),
                   user_until=datetime.fromisoformat(until) if until else None,
                   submissions_from=datetime.fromisoformat(since) if since else None)

    def may_hold(self, record_id: str, event_time: datetime, submitted_at: datetime | None = None,
                 answers: pd.DataFrame | None = None) -> bool:
        """Whether the model may have learned from the ``heart`` row ``record_id`` (with its
        ``event_time``; for a user row also its ``submitted_at``, when known; ``answers``: the row's
        feature columns as read from ``heart``, which a split by answers needs; without them the
        rule says "learned from")."""
        source = record_id.split(":", 1)[0]
        if source not in self.sources:
            return False
        if source == "user":
            if not self.user_rows or self.user_until is None or as_utc(event_time) > as_utc(self.user_until):
                return False
            if (self.submissions_from is not None and submitted_at is not None
                    and as_utc(submitted_at) < as_utc(self.submissions_from)):
                return False
        if self.split_by == "profile" and not record_id.startswith("synthetic:"):
            if answers is None:
                return True
            return not bool(hash_fraction(profile_key(answers), self.split_seed)[0] < self.test_size)
        return not on_test_side(record_id, self.split_seed, self.test_size)


def on_test_side(record_id: str, seed: int, test_size: float) -> bool:
    """Whether the split by record id with this seed and test share puts ``record_id`` on its test
    side (synthetic rows never are: they only ever train)."""
    if record_id.startswith("synthetic:"):
        return False
    return bool(hash_fraction(pd.Series([record_id]), seed)[0] < test_size)


def may_hold_untagged(event_time: datetime, registered_at: datetime) -> bool:
    """For a version without lineage tags: any row merged before it was registered may be in it."""
    return as_utc(event_time) <= as_utc(registered_at)


def user_rows_read(group: FeatureGroup, version: int, train_ids: pd.Series) -> tuple[int, datetime | None]:
    """How many of ``train_ids`` are user rows of ``group`` at ``version``, and their latest event time."""
    users = train_ids[train_ids.str.startswith("user:")]
    if users.empty:
        return 0, None
    times = group.read(version=version, sources=["user"], columns=["record_id", "event_time"])
    times = times[times["record_id"].isin(set(users))]
    if times.empty:
        return 0, None
    return len(times), pd.Timestamp(times["event_time"].max()).to_pydatetime()
