"""Feature views: the features and label a model needs, read from a group at a known version.

The split is by a seeded hash, not by shuffling, so a record stays on the same side as the table grows:
every model version is tested on records it never trained on and the champion gate compares models on
the same real test records. What is hashed (issue 16):

- ``by="profile"`` (the default): the 17 answers. 5.3 % of the Kaggle rows are exact copies of another
  row and 947 answer profiles carry both labels; hashed by profile, every copy of the same answers is
  on one side, so the test side never asks about answers the model was trained on. Synthetic rows whose
  answers fall on the test side are left out of training for the same reason.
- ``by="record"``: ``record_id``, the split used before; kept to report how much it flattered the
  scores (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.store.groups import REAL_SOURCES
from heartrisk.store.table import FeatureGroup


@dataclass
class Split:
    """Train and test sides, with the lineage a model needs to record (group and table version)."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    train_ids: pd.Series
    test_ids: pd.Series
    train_sources: pd.Series
    group: str
    table_version: int
    by: str = "profile"

    def summary(self) -> dict[str, float | int | str]:
        return {
            "group": self.group, "table_version": self.table_version, "split_by": self.by,
            "train_rows": len(self.y_train), "test_rows": len(self.y_test),
            "train_positive_rate": float(self.y_train.mean()) if len(self.y_train) else 0.0,
            "test_positive_rate": float(self.y_test.mean()) if len(self.y_test) else 0.0,
            "train_synthetic_rows": int((self.train_sources == "synthetic").sum()),
        }


@dataclass
class FeatureView:
    """Features + label + a source filter over one feature group."""

    group: FeatureGroup
    features: tuple[str, ...] = FEATURE_NAMES
    label: str = LABEL.name
    sources: tuple[str, ...] | None = None
    extra_columns: tuple[str, ...] = field(default=("record_id", "event_time", "source"))
    #: Read a seeded sample of about this many rows when the table holds more (None: every row).
    max_rows: int | None = None

    def read(self, version: int | None = None) -> tuple[pd.DataFrame, int]:
        """The view's rows and the table version they came from (pinned, so both agree).

        With ``max_rows`` and a larger table, a seeded sample of about ``max_rows`` rows, chosen by a
        hash of the record id (the same record is in or out on every read) and read a record batch at a
        time, so the process holds the sample, never the table. The sample's coin is not the test
        split's (another key), so both sides are sampled alike."""
        if version is None:  # the latest: pinned again if another machine's forget purges it meanwhile
            return self.group.reading(lambda: self._read_at(self.group.version()))
        return self._read_at(version)

    def _read_at(self, version: int) -> tuple[pd.DataFrame, int]:
        columns = [*self.extra_columns, *self.features, self.label]
        total = self.group.count(version=version, sources=self.sources) if self.max_rows else 0
        if not self.max_rows or total <= self.max_rows:
            return self.group.read(version=version, sources=self.sources, columns=columns), version
        share = self.max_rows / total
        kept = []
        for batch in self.group.read_batches(version=version, sources=self.sources, columns=columns):
            ids = batch.column("record_id").to_pandas()
            kept.append(batch.filter(pa.array(hash_fraction(ids, SAMPLE_SEED) < share)))
        schema = pa.schema([self.group.spec.schema.field(c) for c in columns])
        table = pa.Table.from_batches(kept, schema=schema)
        return table.to_pandas(), version

    def train_test_split(self, test_size: float = 0.2, seed: int = 42, include_synthetic: bool = True,
                         version: int | None = None,
                         by: Literal["profile", "record"] = "profile") -> Split:
        """Real records split by a seeded hash of their answers (or record id); synthetic rows only
        ever train, and only when their answers are on the training side."""
        frame, version = self.read(version)
        real = frame["source"].isin(REAL_SOURCES).to_numpy()
        if by == "profile":
            test_side = hash_fraction(profile_key(frame[list(self.features)]), seed) < test_size
        elif by == "record":
            test_side = hash_fraction(frame["record_id"], seed) < test_size
        else:
            raise ValueError(f"unknown split {by!r}; known: profile, record")
        in_test = real & test_side
        in_train = ~test_side & (real | include_synthetic) if by == "profile" else \
            ~in_test & (real | include_synthetic)
        train, test = frame[in_train], frame[in_test]
        return Split(
            X_train=train[list(self.features)].reset_index(drop=True),
            y_train=train[self.label].astype(int).reset_index(drop=True),
            X_test=test[list(self.features)].reset_index(drop=True),
            y_test=test[self.label].astype(int).reset_index(drop=True),
            train_ids=train["record_id"].reset_index(drop=True),
            test_ids=test["record_id"].reset_index(drop=True),
            train_sources=train["source"].reset_index(drop=True),
            group=self.group.spec.table_name,
            table_version=version,
            by=by,
        )


#: Seed of the sampling coin (:attr:`FeatureView.max_rows`): not a split seed, so the two are unrelated.
SAMPLE_SEED = 9_000_001


def profile_key(answers: pd.DataFrame) -> pd.Series:
    """One string per row naming its answers (Unknown included): equal answers, equal keys."""
    text = answers.astype(object).where(answers.notna(), None).astype(str)
    first, *rest = text.columns
    return text[first].str.cat([text[c] for c in rest], sep="|")


def hash_fraction(ids: pd.Series, seed: int) -> np.ndarray:
    """A number in [0, 1) per id, fixed by (seed, id): a stable, seeded coin for each record."""
    key = f"heartrisk{seed:07d}"[-16:]
    hashed = pd.util.hash_pandas_object(ids.astype(str), index=False, hash_key=key).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
