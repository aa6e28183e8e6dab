"""Consented submissions: what the web form calls when a person shares answers and a known diagnosis.

One small, stable function, :func:`add_submission`. It appends one row to ``heart_user`` (the daily
job merges it into ``heart``). Answers are checked by the feature spec; an unanswered question, or
``None``/"Unknown", stays null (imputation belongs to the model, not to the stored data).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.groups import HEART_USER, open_group
from heartrisk.validation import Problem, ValidationError

#: Answers that mean "I don't know" besides a missing key or None.
UNKNOWN_ANSWERS = frozenset({"", "unknown"})


def _answer(value: object) -> object:
    if isinstance(value, str) and value.strip().casefold() in UNKNOWN_ANSWERS:
        return None
    return value


def add_submission(settings: Settings, answers: Mapping[str, object], heart_disease: bool, *,
                   submitted_at: datetime | None = None) -> str:
    """Store one consented submission; returns its new ``submission_id`` (a random UUID4).

    ``answers`` maps feature names (``bmi``, ``smoking``, …) to the person's answers; questions left
    out are Unknown. A name that is not a feature, a value the spec refuses, or a diagnosis that is
    not True/False raises :class:`~heartrisk.validation.ValidationError` and stores nothing.
    """
    source = "submission"
    unknown = sorted(set(answers) - set(FEATURE_NAMES))
    problems = [Problem(0, name, answers[name], "is not a question of this form") for name in unknown]
    if not isinstance(heart_disease, bool):
        problems.append(Problem(0, LABEL.name, heart_disease, "is not allowed: expected True or False"))
    if problems:
        raise ValidationError(problems, source)
    moment = pd.Timestamp(submitted_at or datetime.now(UTC))
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    submission_id = str(uuid.uuid4())
    frame = pd.DataFrame({
        "submission_id": [submission_id],
        "submitted_at": [moment],
        **{name: [_answer(answers.get(name))] for name in FEATURE_NAMES},
        LABEL.name: [heart_disease],
    })
    for name in FEATURE_NAMES:  # all-None columns must not pass as floats or strings by accident
        frame[name] = frame[name].astype(object)
    open_group(settings, HEART_USER).insert(frame)
    return submission_id
