"""Validation names the row, column and value of every bad cell, and never lets one through."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartrisk.features import FEATURES, LABEL, feature
from heartrisk.validation import ValidationError, coerce

GOOD = {
    "bmi": 27.5, "smoking": "No", "alcohol_drinking": "No", "stroke": "No", "physical_health": 0,
    "mental_health": 2, "diff_walking": "No", "sex": "Female", "age_category": "55-59",
    "race": "White", "diabetic": "No", "physical_activity": "Yes", "gen_health": "Very good",
    "sleep_time": 7, "asthma": "No", "kidney_disease": "No", "skin_cancer": "No",
    "heart_disease": "No",
}


def frame(**changes: object) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, **changes}])


def test_a_good_row_passes_typed() -> None:
    result = coerce(frame())
    assert result.problems == []
    row = result.frame.iloc[0]
    assert row["bmi"] == 27.5 and row["sex"] == "Female" and not row["heart_disease"]


def test_unknowns_become_null_not_errors() -> None:
    result = coerce(frame(bmi=None, smoking="", sleep_time=float("nan"), race="  "))
    assert result.problems == []
    assert math.isnan(result.frame.at[0, "bmi"]) and result.frame.at[0, "smoking"] is None
    assert result.frame.at[0, "race"] is None


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("bmi", "abc", "is not a number"),
    ("bmi", 5, "out of range"),
    ("bmi", "NaN", "is not a number"),
    ("bmi", "inf", "out of range"),
    ("physical_health", 3.5, "not a whole number"),
    ("mental_health", -1, "out of range"),
    ("sleep_time", 25, "out of range"),
    ("sex", "female", "is not allowed"),
    ("diabetic", "Maybe", "is not allowed"),
    ("smoking", True, "is not allowed"),
    ("bmi", True, "is not a number"),
    ("heart_disease", "Perhaps", "expected 'Yes' or 'No'"),
    ("heart_disease", "", "is missing"),
])
def test_bad_values_are_named(column: str, value: object, reason: str) -> None:
    result = coerce(frame(**{column: value}))
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert (problem.row, problem.column) == (0, column)
    assert reason in problem.reason
    with pytest.raises(ValidationError, match=f"row 0, column {column}"):
        result.raise_if_any()


def test_line_numbers_and_kaggle_names_in_messages() -> None:
    raw = pd.DataFrame([{f.column: GOOD[f.name] for f in (*FEATURES, LABEL)}] * 3).astype(object)
    raw.loc[2, "BMI"] = "x"
    with pytest.raises(ValidationError, match=r"line 4, column BMI: 'x' is not a number"):
        coerce(raw, naming="column").raise_if_any("heart.csv", first_line=2)


def test_missing_column_is_refused() -> None:
    with pytest.raises(ValidationError, match="column bmi is missing"):
        coerce(frame().drop(columns=["bmi"]))


def _bad_numbers(name: str) -> st.SearchStrategy[object]:
    spec = feature(name)
    outside = st.one_of(
        st.floats(max_value=spec.low, exclude_max=True, allow_nan=False),
        st.floats(min_value=spec.high, exclude_min=True, allow_nan=False),
    )
    words = st.text(min_size=1).filter(lambda s: _not_a_number(s))
    return st.one_of(outside, words)


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return bool(text.strip())
    return False


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_bad_values_are_always_caught(data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(FEATURES))
    if spec.is_numeric:
        value = data.draw(_bad_numbers(spec.name))
    else:
        value = data.draw(st.one_of(
            st.text().filter(lambda s: s.strip() and s.strip() not in spec.values),
            st.integers(), st.booleans()))
    result = coerce(frame(**{spec.name: value}))
    assert [p.column for p in result.problems] == [spec.name]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_random_good_values_always_pass(data: st.DataObject) -> None:
    row = {}
    for spec in FEATURES:
        if spec.is_numeric:
            if spec.whole:
                value = data.draw(st.integers(int(spec.low), int(spec.high)))
            else:
                value = data.draw(st.floats(spec.low, spec.high))
        else:
            value = data.draw(st.sampled_from(spec.values))
        row[spec.name] = data.draw(st.one_of(st.just(value), st.just(None)))
    result = coerce(pd.DataFrame([{**row, "heart_disease": "Yes"}]))
    assert result.problems == []
