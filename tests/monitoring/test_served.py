"""Drift of the people served, from the profile's counts: quiet for a crowd like the training data,
loud for a crowd of 80-year-olds; nothing computed for a handful of people."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.model.registry import champion_model
from heartrisk.monitoring.checks import CheckSettings, _drift
from heartrisk.monitoring.drift import DriftSettings
from heartrisk.monitoring.estimated import METRICS, estimate
from heartrisk.monitoring.reads import reference_sample
from heartrisk.monitoring.served import card_reliability, estimated_by_day, served_drift
from heartrisk.monitoring.served_profile import RISK, ServingProfile, read_profile
from support.people import rows_from

DAY = date(2026, 5, 6)


def serve_in_process(settings: Settings, people: list[dict], version: str) -> None:
    """Count ``people`` as the server would, with the champion's own risks."""
    model = champion_model(settings)
    risks = model.predict_proba(pd.DataFrame(people, columns=list(FEATURE_NAMES)))
    profile = ServingProfile(settings, replica="test", flush_seconds=0, today=lambda: DAY)
    for person, risk in zip(people, risks, strict=True):
        profile.record(person, float(risk), risk >= model.threshold, version)
    profile.stop()


def test_a_crowd_like_the_training_data_passes_and_a_crowd_of_80_year_olds_fails(
        trained: Settings, dev_frame: pd.DataFrame) -> None:
    model = champion_model(trained)
    reference = reference_sample(trained, model)
    config = DriftSettings(min_rows=500)
    checks = CheckSettings()

    serve_in_process(trained, rows_from(dev_frame, 1500, seed=1), "1")
    usual = served_drift(reference, read_profile(trained), DAY + timedelta(days=1), config)
    assert usual is not None and usual.window.enough and usual.window.rows == 1500
    assert _drift("served_drift", usual, checks, "people served").status == "pass", usual.drifted

    serve_in_process(trained, rows_from(dev_frame, 600, seed=2,
                                        where=dev_frame["AgeCategory"] == "80 or older"), "2")
    profile = read_profile(trained, model_version="2")
    shifted = served_drift(reference, profile, DAY + timedelta(days=1), config)
    assert shifted is not None and "age_category" in shifted.drifted
    assert _drift("served_drift", shifted, checks, "people served").status == "fail"


def test_fewer_than_ten_people_get_no_drift_figures(trained: Settings, dev_frame: pd.DataFrame) -> None:
    serve_in_process(trained, rows_from(dev_frame, 9, seed=4), "1")
    reference = reference_sample(trained, champion_model(trained))
    assert served_drift(reference, read_profile(trained), DAY + timedelta(days=1)) is None


def test_the_served_estimate_is_recalibrated_on_the_versions_reliability_table(
        trained: Settings, dev_frame: pd.DataFrame) -> None:
    """A new version's card carries the table (from its test records); the day's estimate uses it."""
    model = champion_model(trained)
    table = card_reliability(model.card)
    assert table is not None and sum(table.count) == model.card["data"]["test_records"]
    serve_in_process(trained, rows_from(dev_frame, 600, seed=3), "1")
    profile = read_profile(trained)
    day = estimated_by_day(profile, draws=300, reliability=table).iloc[0]
    cells = profile[profile["question"] == RISK]
    expected = estimate(cells, draws=300, reliability=table)
    as_served = estimate(cells, draws=300)
    for m in METRICS:
        assert (day[m], day[f"{m}_low"], day[f"{m}_high"]) == (expected[m].value, expected[m].low,
                                                              expected[m].high)
    assert day["recall"] != as_served["recall"].value
