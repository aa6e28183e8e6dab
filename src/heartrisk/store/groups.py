"""The three feature groups of DESIGN.md, their schemas derived from the feature spec.

``heart`` holds every record the models learn from, ``heart_user`` the outcomes people chose to share,
``heart_predictions`` what the champion said about each record. :func:`open_group` gives a ready
:class:`~heartrisk.store.table.FeatureGroup` for the settings' store.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from heartrisk.config import Settings
from heartrisk.features import FEATURES, LABEL
from heartrisk.store.table import FeatureGroup, GroupSpec
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

GROUPS: tuple[GroupSpec, ...] = (HEART, HEART_USER, HEART_PREDICTIONS)


def open_group(settings: Settings, spec: GroupSpec) -> FeatureGroup:
    """The feature group ``spec`` in the settings' store (created lazily on first insert)."""
    return FeatureGroup(spec=spec, root=settings.store_root, locks_dir=settings.locks_dir)
