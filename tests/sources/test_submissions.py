"""add_submission: what the web form calls to share answers and a known diagnosis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART_USER, open_group
from heartrisk.validation import ValidationError

ANSWERS = {"bmi": 27.3, "smoking": "Yes", "alcohol_drinking": "No", "stroke": "No",
           "physical_health": 2, "mental_health": 0, "diff_walking": "No", "sex": "Female",
           "age_category": "60-64", "race": "White", "diabetic": "No, borderline diabetes",
           "physical_activity": "Yes", "gen_health": "Very good", "sleep_time": 7, "asthma": "No",
           "kidney_disease": "No", "skin_cancer": "Yes"}


def test_a_submission_is_stored_as_answered(settings: Settings) -> None:
    before = datetime.now(UTC)
    answers = {**ANSWERS, "bmi": None, "race": "Unknown"}
    del answers["sleep_time"]
    submission_id = add_submission(settings, answers, True)
    assert uuid.UUID(submission_id).version == 4
    stored = open_group(settings, HEART_USER).read()
    assert len(stored) == 1
    row = stored.iloc[0]
    assert row["submission_id"] == submission_id and bool(row["heart_disease"]) is True
    assert before - timedelta(seconds=1) <= row["submitted_at"] <= datetime.now(UTC)
    assert pd.isna(row["bmi"]) and row["race"] is None and pd.isna(row["sleep_time"])  # Unknown stays null
    assert row["diabetic"] == "No, borderline diabetes" and row["physical_health"] == 2.0
    assert set(FEATURE_NAMES) <= set(stored.columns)


def test_each_submission_gets_its_own_id(settings: Settings) -> None:
    ids = {add_submission(settings, ANSWERS, False) for _ in range(3)}
    assert len(ids) == 3 and open_group(settings, HEART_USER).count() == 3


@pytest.mark.parametrize(("answers", "diagnosis", "column"), [
    ({**ANSWERS, "bmi": 500}, True, "bmi"),
    ({**ANSWERS, "physical_health": 2.5}, True, "physical_health"),
    ({**ANSWERS, "smoking": "Sometimes"}, False, "smoking"),
    ({**ANSWERS, "favourite_colour": "blue"}, False, "favourite_colour"),
    (ANSWERS, None, "heart_disease"),
    (ANSWERS, "Yes", "heart_disease"),
])
def test_a_bad_submission_names_the_problem_and_stores_nothing(settings: Settings, answers: dict,
                                                              diagnosis: object, column: str) -> None:
    add_submission(settings, ANSWERS, False)
    with pytest.raises(ValidationError, match=column):
        add_submission(settings, answers, diagnosis)  # type: ignore[arg-type]
    assert open_group(settings, HEART_USER).count() == 1
