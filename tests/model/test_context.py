"""The risk in context (issue 17) on a real quick-trained model and real held-out survey records.

Behaviour, not figures: the risk age rises with the risk, the healthy peer is never above a person
like them who smokes, what-ifs only change what a person can change, the range holds the point risk
and widens with Unknowns, and (the issue's measure) on held-out records with answers blanked at random
the risk with the true answers falls inside the range at least 80 % of the time.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import BY_NAME, FEATURE_NAMES, FEATURES, IDENTITY_FEATURES, feature
from heartrisk.model.card import pipeline_margins, range_coverage, rows_as_answers
from heartrisk.model.context import AGE, HealthyCurves, RiskContext, contexts, plan, risk_age
from heartrisk.model.reference import MIN_CELL, SurveyReference, build_reference
from heartrisk.model.registry import LoadedModel, champion_model

AGES = feature("age_category").values


@pytest.fixture(scope="module")
def champion(trained_home: Settings) -> LoadedModel:
    return champion_model(trained_home)


@pytest.fixture(scope="module")
def reference(champion: LoadedModel) -> SurveyReference:
    found = champion.reference
    assert found is not None, "training must store the survey reference with the version"
    return found


@pytest.fixture(scope="module")
def held_out(trained_home: Settings) -> pd.DataFrame:
    """The real test records of the trained home (never seen by the model or its reference)."""
    from heartrisk.jobs.train import TrainSettings, load_data

    return load_data(trained_home, TrainSettings.for_quick()).X_test


def context_of(champion: LoadedModel, reference: SurveyReference, people: list[dict[str, Any]]
               ) -> list[RiskContext]:
    model = champion.model
    return contexts(people, pipeline_margins(model), model.calibration, model.imputation(), reference)


def healthy(**changes: Any) -> dict[str, Any]:
    return {**{f.name: f.healthy for f in FEATURES}, "sex": "Male", "age_category": "60-64",
            "race": "White", **changes}


def test_healthy_answers_live_in_the_spec() -> None:
    for f in FEATURES:
        assert (f.healthy is None) == (f.name in IDENTITY_FEATURES), f.name
        if f.is_numeric and f.healthy_range:
            assert f.healthy_range[0] <= f.healthy <= f.healthy_range[1]
    assert BY_NAME["bmi"].healthier(31.0) == 24.9 and BY_NAME["bmi"].healthier(17.0) == 18.5
    assert BY_NAME["bmi"].healthier(22.0) is None
    assert BY_NAME["gen_health"].healthier("Poor") == "Fair"  # one step, not a leap to Excellent
    assert BY_NAME["smoking"].healthier("Yes") == "No" and BY_NAME["smoking"].healthier(None) is None
    assert BY_NAME["stroke"].healthier("Yes") is None  # a diagnosis is not a what-if


def test_context_matches_the_model(champion: LoadedModel, reference: SurveyReference,
                                   held_out: pd.DataFrame) -> None:
    people = rows_as_answers(held_out.head(20))
    found = context_of(champion, reference, people)
    expected = champion.predict_proba(held_out.head(20))
    assert np.allclose([c.probability for c in found], expected, atol=1e-9)
    for c in found:
        assert c.icons.with_disease == round(100 * c.probability)
        assert 0 <= c.percentile.percentile <= 100
        assert c.healthy_peer.ratio == pytest.approx(c.probability / c.healthy_peer.probability)
        peer = c.healthy_peer.answers
        assert all(peer[f.name] == f.healthy for f in FEATURES if f.name not in IDENTITY_FEATURES)


def test_a_request_is_scored_in_one_call_once_its_healthy_curve_is_kept(champion: LoadedModel,
                                                      reference: SurveyReference) -> None:
    calls: list[int] = []
    margins = pipeline_margins(champion.model)

    def counted(columns: dict[str, list[Any]], n: int) -> np.ndarray:
        calls.append(n)
        assert all(len(values) == n for values in columns.values())
        return margins(columns, n)

    person = healthy(smoking="Yes", bmi=31.0, sleep_time=None, race=None, gen_health="Fair")
    model = champion.model
    curves = HealthyCurves(counted)
    first = contexts([person], counted, model.calibration, model.imputation(), reference, curves)
    assert calls == [plan(person, model.imputation(), reference).size, len(AGES)]  # the rows, the curve
    assert calls[0] < 50
    # The next person of the same sex and race: the kept curve, one call, the same numbers as afresh.
    other = {**person, "age_category": "35-39", "bmi": 24.0}
    again = contexts([other], counted, model.calibration, model.imputation(), reference, curves)
    assert calls[2:] == [plan(other, model.imputation(), reference).size]
    fresh = contexts([other], margins, model.calibration, model.imputation(), reference)
    assert again[0].model_dump() == fresh[0].model_dump()
    assert first[0].risk_age.healthy_by_age == again[0].risk_age.healthy_by_age
    # Another race, then another sex: each its own curve (one more call each), as a fresh one gives.
    for changed in ({**other, "race": "Asian"}, {**other, "race": "Asian", "sex": "Female"}):
        before = len(calls)
        kept = contexts([changed], counted, model.calibration, model.imputation(), reference, curves)
        assert calls[before:] == [plan(changed, model.imputation(), reference).size, len(AGES)]
        fresh = contexts([changed], margins, model.calibration, model.imputation(), reference)
        assert kept[0].model_dump() == fresh[0].model_dump()


def test_risk_age_rises_with_risk_and_is_capped(champion: LoadedModel,
                                                reference: SurveyReference) -> None:
    curve = np.array(context_of(champion, reference, [healthy()])[0].risk_age.healthy_by_age)
    years = [risk_age(p, curve).years for p in np.linspace(0.0, 0.9, 400)]
    assert all(b >= a for a, b in itertools.pairwise(years))
    assert risk_age(0.0, curve).capped == "younger"
    assert risk_age(0.999, curve).capped == "older"
    assert risk_age(float(np.maximum.accumulate(curve)[6]), curve).capped is None
    # the healthy peer of a healthy person is themself: the risk age is their own age group
    for age in ("45-49", "70-74"):
        ctx = context_of(champion, reference, [healthy(age_category=age)])[0]
        assert ctx.healthy_peer.probability == pytest.approx(ctx.probability)


def test_healthy_peer_is_never_above_a_smoker_like_them(champion: LoadedModel,
                                                        reference: SurveyReference) -> None:
    people = [healthy(sex=sex, age_category=age, smoking="Yes", race=race)
              for sex in ("Female", "Male") for age in AGES for race in ("White", "Black", None)]
    for person, ctx in zip(people, context_of(champion, reference, people), strict=True):
        assert ctx.healthy_peer.probability <= ctx.probability + 1e-12, person


def test_what_if_only_changes_what_a_person_can_change(champion: LoadedModel,
                                                       reference: SurveyReference,
                                                       held_out: pd.DataFrame) -> None:
    people = rows_as_answers(held_out.sample(60, random_state=3))
    for person, ctx in zip(people, context_of(champion, reference, people), strict=True):
        differences = [w.difference for w in ctx.what_if]
        assert differences == sorted(differences, reverse=True)
        for w in ctx.what_if:
            assert BY_NAME[w.feature].changeable, w.feature
            assert w.answer == person[w.feature] is not None
            assert w.healthier == BY_NAME[w.feature].healthier(person[w.feature])
            assert w.difference == pytest.approx(ctx.probability - w.probability)


def test_range_holds_the_risk_and_widens_with_unknowns(champion: LoadedModel,
                                                       reference: SurveyReference,
                                                       held_out: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    people = rows_as_answers(held_out.dropna().sample(40, random_state=5))
    widths: dict[int, list[float]] = {}
    for person in people:
        order = rng.permutation(FEATURE_NAMES)
        for k in (0, 1, 3, 6):
            blanked = {**person, **dict.fromkeys(order[:k])}
            ctx = context_of(champion, reference, [blanked])[0]
            assert ctx.range.low <= ctx.probability <= ctx.range.high
            assert ctx.range.unknowns == k
            widths.setdefault(k, []).append(ctx.range.high - ctx.range.low)
    means = [float(np.mean(widths[k])) for k in (0, 1, 3, 6)]
    assert means == sorted(means) and means[-1] > 2 * means[0], means
    # the same answers always give the same range (seeded draws)
    blanked = {**people[0], "bmi": None, "smoking": None}
    again = [context_of(champion, reference, [blanked])[0].range for _ in range(2)]
    assert again[0] == again[1]


def test_range_covers_the_true_risk_at_least_80_percent(champion: LoadedModel,
                                                        reference: SurveyReference,
                                                        held_out: pd.DataFrame) -> None:
    found = range_coverage(champion.model, reference, held_out, per_count=200, unknowns=(1, 3, 6), seed=11)
    for row in found:
        assert row["coverage"] >= 0.8, found
    assert found[0]["mean_width"] < found[-1]["mean_width"]
    # the card stored with the version carries the same measure
    card = champion.card
    assert card is not None and [r["unknowns"] for r in card["range_coverage"]] == [1, 2, 3, 5, 8]
    stored = card["range_coverage"]
    assert all(r["coverage"] >= 0.8 for r in stored if r["unknowns"] <= 5), stored
    overall = sum(r["coverage"] * r["records"] for r in stored) / sum(r["records"] for r in stored)
    assert overall >= 0.8, stored


def test_reference_keeps_aggregates_only(champion: LoadedModel, held_out: pd.DataFrame) -> None:
    model = champion.model
    small = held_out.head(400)
    built = build_reference(model, small, held_out.head(300), np.r_[np.ones(30), np.zeros(270)])
    counts = small.groupby(["sex", "age_category"]).size()
    for (sex, age), n in counts.items():
        assert (f"{sex}|{age}" in built.risk_percentiles) == (n >= MIN_CELL)
    assert "*|*" in built.risk_percentiles and len(built.risk_percentiles["*|*"]) == 99
    percentiles = [built.percentile(p, "Male", "60-64")[0] for p in np.linspace(0, 1, 50)]
    assert percentiles == sorted(percentiles) and percentiles[0] == 0 and percentiles[-1] == 100
    assert built.percentile(0.1, None, "60-64")[1] in ("*|60-64", "*|*")


def test_card_reports_subgroups(champion: LoadedModel) -> None:
    card = champion.card
    assert card is not None
    assert {g["group"] for g in card["subgroups"]["sex"]} == {"Female", "Male"}
    assert [g["group"] for g in card["subgroups"]["age_category"]] == [
        a for a in AGE.values if a in {g["group"] for g in card["subgroups"]["age_category"]}]
    total = sum(g["records"] for g in card["subgroups"]["race"])
    assert total == card["overall"]["records"]
    assert "not a 10-year risk" in card["label"]
