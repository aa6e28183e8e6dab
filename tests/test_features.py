"""The feature spec is complete, consistent and matches the Kaggle data."""

from __future__ import annotations

import pandas as pd
import pytest

from heartrisk.features import (
    BY_COLUMN,
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    KAGGLE_COLUMNS,
    LABEL,
    NUMERIC_FEATURES,
    feature,
)


def test_seventeen_features_and_a_label() -> None:
    assert len(FEATURES) == 17
    assert len(set(FEATURE_NAMES)) == 17
    assert LABEL.name == "heart_disease"
    assert set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES) == set(FEATURE_NAMES)
    assert set(NUMERIC_FEATURES) == {"bmi", "physical_health", "mental_health", "sleep_time"}


def test_every_feature_is_asked_as_a_question() -> None:
    for spec in FEATURES:
        assert spec.question.strip(), spec.name
        if spec.is_categorical:
            assert len(spec.values) >= 2, spec.name
        else:
            assert spec.low is not None and spec.high is not None and spec.low < spec.high


def test_ranges_from_the_issue() -> None:
    assert (feature("bmi").low, feature("bmi").high) == (10, 100)
    for name in ("physical_health", "mental_health"):
        assert (feature(name).low, feature(name).high, feature(name).whole) == (0, 30, True)
    assert (feature("sleep_time").low, feature("sleep_time").high) == (1, 24)


def test_unknown_feature_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: bmi"):
        feature("bmx")


def test_spec_covers_every_value_in_the_dev_data(dev_frame: pd.DataFrame) -> None:
    assert list(dev_frame.columns) == list(KAGGLE_COLUMNS)
    for column in dev_frame.columns:
        spec = BY_COLUMN[column]
        if spec.is_categorical:
            assert set(dev_frame[column].unique()) == set(spec.values), column
        else:
            values = dev_frame[column].astype(float)
            assert values.between(spec.low, spec.high).all(), column
