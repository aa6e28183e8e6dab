"""Consented submissions: what the web form calls when a person shares answers and a known diagnosis.

One small, stable function, :func:`add_submission`. It appends one row to ``heart_user`` (the daily
job merges it into ``heart``). Answers are checked by the feature spec; an unanswered question, or
``None``/"Unknown", stays null (imputation belongs to the model, not to the stored data).

It is two steps that the web server's group-commit writer
(web/risk_check/submission_writer.py) also uses apart:
:func:`submission_row` builds and checks the row (a refused submission fails here, before anything is
queued), :func:`insert_submissions` writes any number of such rows in one Delta commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

import pandas as pd

from heartrisk.clock import as_utc, utc_now
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.store.groups import HEART_USER, open_group
from heartrisk.store.table import InsertResult
from heartrisk.validation import Problem, ValidationError

#: Answers that mean "I don't know" besides a missing key or None.
UNKNOWN_ANSWERS = frozenset({"", "unknown"})


def _answer(value: object) -> object:
    if isinstance(value, str) and value.strip().casefold() in UNKNOWN_ANSWERS:
        return None
    return value


def submission_row(settings: Settings, answers: Mapping[str, object], heart_disease: bool, *,
                   submitted_at: datetime | None = None) -> pd.DataFrame:
    """One consented submission as a checked ``heart_user`` row with a new ``submission_id`` (UUID4).

    ``answers`` maps feature names (``bmi``, ``smoking``, …) to the person's answers; questions left
    out are Unknown. A name that is not a feature, a value the spec refuses, or a diagnosis that is
    not True/False raises :class:`~heartrisk.validation.ValidationError` (the same one the insert
    would raise); nothing is written either way.
    """
    source = "submission"
    unknown = sorted(set(answers) - set(FEATURE_NAMES))
    problems = [Problem(0, name, answers[name], "is not a question of this form") for name in unknown]
    if not isinstance(heart_disease, bool):
        problems.append(Problem(0, LABEL.name, heart_disease, "is not allowed: expected True or False"))
    if problems:
        raise ValidationError(problems, source)
    moment = pd.Timestamp(as_utc(submitted_at or utc_now()))
    frame = pd.DataFrame({
        "submission_id": [str(uuid.uuid4())],
        "submitted_at": [moment],
        **{name: [_answer(answers.get(name))] for name in FEATURE_NAMES},
        LABEL.name: [heart_disease],
    })
    for name in FEATURE_NAMES:  # all-None columns must not pass as floats or strings by accident
        frame[name] = frame[name].astype(object)
    open_group(settings, HEART_USER).check(frame)
    return frame


def insert_submissions(settings: Settings, rows: pd.DataFrame) -> InsertResult:
    """Write rows made by :func:`submission_row` in one Delta commit (all or none; keys already
    stored are skipped, so writing the same rows again stores nothing twice)."""
    return open_group(settings, HEART_USER).insert(rows)


def add_submission(settings: Settings, answers: Mapping[str, object], heart_disease: bool, *,
                   submitted_at: datetime | None = None) -> str:
    """Store one consented submission now; returns its new ``submission_id`` (a random UUID4).

    See :func:`submission_row` for what is accepted; a refused submission stores nothing.
    """
    row = submission_row(settings, answers, heart_disease, submitted_at=submitted_at)
    insert_submissions(settings, row)
    return str(row["submission_id"].iat[0])
