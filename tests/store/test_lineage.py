"""Lineage: the tags a model version keeps of what it learned from, and the rule `forget` asks of a row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from heartrisk.store.lineage import Lineage, may_hold_untagged, on_test_side
from heartrisk.store.view import hash_fraction

MERGED = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def user_ids(side: str, seed: int = 42, test_size: float = 0.2, n: int = 1) -> list[str]:
    """User record ids the split with ``seed`` puts on ``side`` ("train" or "test")."""
    found = []
    while len(found) < n:
        record = f"user:{uuid.uuid4()}"
        in_test = hash_fraction(pd.Series([record]), seed)[0] < test_size
        if in_test == (side == "test"):
            found.append(record)
    return found


LINEAGE = Lineage(group="heart_v1", table_version=7, sources=("kaggle", "user"), split_seed=42, test_size=0.2,
                  user_rows=3, user_until=MERGED)


def test_tags_round_trip_and_an_untagged_version_has_none() -> None:
    tags = LINEAGE.to_tags()
    assert tags["lineage_table_version"] == "7" and tags["lineage_sources"] == "kaggle,user"
    assert Lineage.from_tags({**tags, "family": "lightgbm"}) == LINEAGE
    since = Lineage(**{**LINEAGE.__dict__, "submissions_from": MERGED - timedelta(days=30)})
    assert Lineage.from_tags(since.to_tags()) == since
    assert Lineage.from_tags({"family": "lightgbm"}) is None


def test_a_user_row_is_held_only_if_merged_by_the_read_and_on_the_training_side() -> None:
    train_side, test_side = user_ids("train")[0], user_ids("test")[0]
    assert LINEAGE.may_hold(train_side, MERGED)
    assert LINEAGE.may_hold(train_side, MERGED - timedelta(days=3))
    assert not LINEAGE.may_hold(train_side, MERGED + timedelta(seconds=1))  # merged after the read
    assert not LINEAGE.may_hold(test_side, MERGED)  # the test side is never learned from
    assert on_test_side(test_side, 42, 0.2) and not on_test_side(train_side, 42, 0.2)


def test_sources_and_consent_decide_before_anything_else() -> None:
    row = user_ids("train")[0]
    kaggle_only = Lineage(**{**LINEAGE.__dict__, "sources": ("kaggle",), "user_rows": 0, "user_until": None})
    assert not kaggle_only.may_hold(row, MERGED)  # the synthesizer's default: no user row at all
    none_read = Lineage(**{**LINEAGE.__dict__, "user_rows": 0})
    assert not none_read.may_hold(row, MERGED)
    consented = Lineage(**{**LINEAGE.__dict__, "submissions_from": MERGED - timedelta(days=1)})
    assert not consented.may_hold(row, MERGED, submitted_at=MERGED - timedelta(days=2))  # shared before
    assert consented.may_hold(row, MERGED, submitted_at=MERGED - timedelta(hours=1))
    assert consented.may_hold(row, MERGED)  # submission time unknown: err towards "learned from"


@pytest.mark.parametrize(("event", "held"), [(-1, True), (0, True), (1, False)])
def test_a_version_without_lineage_holds_every_row_merged_before_it(event: int, held: bool) -> None:
    assert may_hold_untagged(MERGED + timedelta(seconds=event), MERGED) is held


def test_a_split_by_answers_decides_by_the_rows_answers_not_its_id() -> None:
    """Since issue 16 the split hashes the 17 answers: a row's id says nothing about its side."""
    from heartrisk.features import FEATURE_NAMES
    from heartrisk.store.view import profile_key
    from support.web import ANSWERS

    by_answers = Lineage(**{**LINEAGE.__dict__, "split_by": "profile"})
    assert Lineage.from_tags(by_answers.to_tags()) == by_answers
    old = {k: v for k, v in LINEAGE.to_tags().items() if k != "lineage_split_by"}
    assert Lineage.from_tags(old).split_by == "record"  # recorded before the grouped split

    def answers(bmi: float) -> pd.DataFrame:
        return pd.DataFrame([{**ANSWERS, "bmi": bmi}])[list(FEATURE_NAMES)]

    sides = {bmi: hash_fraction(profile_key(answers(bmi)), 42)[0] < 0.2 for bmi in map(float, range(15, 60))}
    test_bmi = next(b for b, in_test in sides.items() if in_test)
    train_bmi = next(b for b, in_test in sides.items() if not in_test)
    for record in (*user_ids("train"), *user_ids("test")):  # whichever side the id alone would hash to
        assert by_answers.may_hold(record, MERGED, answers=answers(train_bmi))
        assert not by_answers.may_hold(record, MERGED, answers=answers(test_bmi))
        assert by_answers.may_hold(record, MERGED)  # answers unknown: err towards "learned from"
