"""The five feature groups, their schemas derived from the feature spec, and the record-id scheme.

``heart`` holds every record the models learn from, ``heart_user`` the outcomes people chose to share,
``heart_user_quarantine`` the shared outcomes the daily merge judged implausible (kept, never merged),
``heart_predictions`` what the champion said about each record, ``serving_profile`` how many people
the web server answered, per day and answer (counts only: :mod:`heartrisk.monitoring.served_profile`).
:func:`open_group` gives a ready
:class:`~heartrisk.store.table.FeatureGroup` for the settings' store.

A ``record_id`` of ``heart`` says where the row came from (the part before the first colon is its
``source``), and is built only here:

* ``kaggle:<first 16 hex of the file's sha256>:<line>``: the same file ingested again adds nothing;
* ``synthetic:<daily run id>:<n>``: a re-run of a killed daily run finds its own rows;
* ``user:<submission_id>``: a shared outcome is merged once, and ``forget`` finds it everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from heartrisk.config import Settings
from heartrisk.features import FEATURES, LABEL
from heartrisk.store.table import FeatureGroup, GroupSpec, StoreError
from heartrisk.validation import Coerced, coerce

UTC_TIME = pa.timestamp("us", tz="UTC")
SOURCES: tuple[str, ...] = ("kaggle", "synthetic", "user")
REAL_SOURCES: tuple[str, ...] = ("kaggle", "user")


def feature_fields() -> list[pa.Field]:
    """The 17 answers as nullable Arrow fields: a person may answer "Unknown" to any of them."""
    return [pa.field(f.name, pa.float64() if f.is_numeric else pa.string(), nullable=True)
            for f in FEATURES]


def _check_labelled(frame: pd.DataFrame) -> Coerced:
    return coerce(frame, label="required")


HEART = GroupSpec(
    name="heart",
    version=1,
    schema=pa.schema([
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("event_time", UTC_TIME, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        *feature_fields(),
        pa.field(LABEL.name, pa.bool_(), nullable=False),
    ]),
    key=("record_id",),
    time_column="event_time",
    description="Survey answers with a known diagnosis: Kaggle, synthetic and shared by users.",
    check=_check_labelled,
    sources=SOURCES,
)

HEART_USER = GroupSpec(
    name="heart_user",
    version=1,
    schema=pa.schema([
        pa.field("submission_id", pa.string(), nullable=False),
        pa.field("submitted_at", UTC_TIME, nullable=False),
        *feature_fields(),
        pa.field(LABEL.name, pa.bool_(), nullable=False),
    ]),
    key=("submission_id",),
    time_column="submitted_at",
    description="Consented submissions from the web form: answers as given and a known diagnosis.",
    check=_check_labelled,
)

HEART_PREDICTIONS = GroupSpec(
    name="heart_predictions",
    version=1,
    schema=pa.schema([
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("event_time", UTC_TIME, nullable=False),
        pa.field("predicted_at", UTC_TIME, nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("prediction", pa.bool_(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field(LABEL.name, pa.bool_(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
    ]),
    key=("record_id", "model_version"),
    time_column="event_time",
    description="Batch predictions of the champion model on new records, with the truth when known.",
    sources=SOURCES,
)

QUARANTINE = GroupSpec(
    name="heart_user_quarantine",
    version=1,
    schema=pa.schema([*HEART_USER.schema, pa.field("quarantined_at", UTC_TIME, nullable=False),
                      pa.field("reason", pa.string(), nullable=False)]),
    key=("submission_id",),
    time_column="quarantined_at",
    description="Submissions the daily merge judged implausible: kept with the reason, never merged.",
    check=None,  # out-of-spec rows must be storable here: they are the point
)

SERVING_PROFILE = GroupSpec(
    name="serving_profile",
    version=1,
    schema=pa.schema([
        pa.field("day", pa.date32(), nullable=False),
        pa.field("replica", pa.string(), nullable=False),
        pa.field("flush_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("flagged", pa.bool_(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("probability_sum", pa.float64(), nullable=False),
    ]),
    key=("flush_id", "model_version", "question", "answer", "flagged"),
    time_column="day",
    description="What the web server was asked, counted per day: answers per question, predicted-risk "
                "histogram. Aggregates only: no row describes one person; no time finer than the day.",
)

GROUPS: tuple[GroupSpec, ...] = (HEART, HEART_USER, QUARANTINE, HEART_PREDICTIONS, SERVING_PROFILE)


def open_group(settings: Settings, spec: GroupSpec) -> FeatureGroup:
    """The feature group ``spec`` in the settings' store (created lazily on first insert)."""
    return FeatureGroup(spec=spec, root=settings.store_root, locks_dir=settings.locks_dir,
                        lease_ttl_s=settings.lease_ttl_s, single_writer=settings.single_writer)


def store_status(settings: Settings) -> dict[str, Any]:
    """For `heartrisk status`: each group's rows, rows by source, version and last write."""
    return {spec.table_name: _group_status(open_group(settings, spec)) for spec in GROUPS}


def _group_status(group: FeatureGroup) -> dict[str, Any]:
    """One group's status, or why it cannot be read: a table that lost a data file no longer hides
    the other four."""
    try:
        return group.status()
    except StoreError as exc:
        return {"exists": True, "uri": group.uri, "error": str(exc)}


# ---------------------------------------------------------------------------------------- record ids
def kaggle_record_ids(file_sha256: str, lines: pd.Index) -> pd.Series:
    """Ids of the rows of a Kaggle file: its checksum and each row's line."""
    return f"kaggle:{file_sha256[:16]}:" + pd.Series(lines.astype(str))


def synthetic_record_ids(run_id: str, rows: int) -> list[str]:
    """Ids of the synthetic rows one daily run adds, numbered from 0."""
    return [f"synthetic:{run_id}:{i:06d}" for i in range(rows)]


def user_record_id(submission_id: str) -> str:
    """The ``heart`` (and ``heart_predictions``) id of a merged submission."""
    return f"user:{submission_id}"


def user_record_ids(submission_ids: pd.Series) -> pd.Series:
    return "user:" + submission_ids.astype(str)


def from_sources(record_ids: pd.Series, sources: Iterable[str]) -> np.ndarray:
    """Per id: whether the row came from one of ``sources`` (read from the id alone)."""
    return record_ids.str.startswith(tuple(f"{source}:" for source in sources)).to_numpy()
