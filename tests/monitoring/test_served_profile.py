"""The serving profile: counts of what was asked, on real Delta tables and the real web server."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from heartrisk.config import Settings
from heartrisk.features import BY_NAME, FEATURE_NAMES
from heartrisk.monitoring.served import profile_table, requests_table
from heartrisk.monitoring.served_profile import (
    RISK,
    ServingProfile,
    answer_bin,
    read_profile,
    risk_bin,
    shown_count,
)
from heartrisk.store.groups import SERVING_PROFILE, open_group
from heartrisk.web.app import WebSettings
from heartrisk.web.guard.auth import PASSWORD_ENV
from heartrisk.web.server import BackgroundServer
from support.people import rows_from

PASSWORD = "served profile password"
#: Every column the profile may have: none names a person, none is a time finer than the day.
ALLOWED_COLUMNS = {"day", "replica", "flush_id", "model_version", "question", "answer", "flagged",
                   "count", "probability_sum"}


def test_bins_are_coarse_and_unknown_is_counted_apart() -> None:
    assert answer_bin(BY_NAME["bmi"], 23.87) == "23"
    assert answer_bin(BY_NAME["bmi"], None) == "Unknown"
    assert answer_bin(BY_NAME["sleep_time"], 24.0) == "24"
    assert answer_bin(BY_NAME["sex"], "Female") == "Female"
    assert risk_bin(0.1799) == "0.17" and risk_bin(1.0) == "0.99" and risk_bin(0.0) == "0.00"
    assert [shown_count(n) for n in (0, 9, 10, 1234)] == ["<10", "<10", 10, 1234]


def test_counts_are_summed_over_writes_and_restarts_and_hold_nothing_per_person(settings: Settings) -> None:
    day = date(2026, 3, 4)
    answers = {"bmi": 27.2, "sex": "Male", "age_category": "80 or older", "smoking": None}
    first = ServingProfile(settings, replica="a", flush_seconds=0, today=lambda: day)
    for i in range(7):
        first.record(answers, 0.05 * i, 0.05 * i >= 0.2, "1")
    first.flush()
    for _ in range(5):
        first.record(answers, 0.31, True, "1")
    first.stop()  # the writes at stop
    again = ServingProfile(settings, replica="a", flush_seconds=0, today=lambda: day)  # a restart
    other = ServingProfile(settings, replica="b", flush_seconds=0, today=lambda: day)  # a second replica
    for profile in (again, other):
        profile.record(answers, 0.5, True, "1")
        profile.stop()
    assert again.flush() == 0  # nothing new: nothing written

    profile = read_profile(settings)
    per_question = profile.groupby("question")["count"].sum()
    assert (per_question == 14).all() and set(per_question.index) == {*FEATURE_NAMES, RISK}
    def counted(question: str, answer: str) -> int:
        return profile.loc[(profile["question"] == question) & (profile["answer"] == answer), "count"].item()

    assert counted("sex", "Male") == 14 and counted("race", "Unknown") == 14
    risk = profile[profile["question"] == RISK]
    expected_sum = sum(0.05 * i for i in range(7)) + 5 * 0.31 + 2 * 0.5
    assert risk["probability_sum"].sum() == pytest.approx(expected_sum)
    assert risk.loc[risk["flagged"], "count"].sum() == 3 + 5 + 2

    table = open_group(settings, SERVING_PROFILE).table()
    schema = pa.schema(table.schema().to_arrow())
    assert set(schema.names) == ALLOWED_COLUMNS
    assert not any(pa.types.is_timestamp(f.type) for f in schema)  # the day is the finest time kept
    stored = open_group(settings, SERVING_PROFILE).read()
    assert stored["flush_id"].nunique() == 4 and set(stored["replica"]) == {"a", "b"}
    assert not stored.duplicated(list(SERVING_PROFILE.key)).any()

    assert requests_table(profile) == [{"day": "2026-03-04", "requests": 14}]
    shown = {(r["question"], r["answer"]): r["count"] for r in profile_table(profile)}
    assert shown[("sex", "Male")] == 14
    assert shown[(RISK, "0.50")] == "<10"  # two people: never shown as a number


def test_a_failed_write_is_retried_with_its_own_id_and_never_counted_twice(settings: Settings) -> None:
    """The store cannot be written (the home's store folder is a file): the counts wait in memory and
    land once when the store is back."""
    store = Path(settings.store_root)
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("not a folder")
    profile = ServingProfile(settings, replica="a", flush_seconds=0, today=lambda: date(2026, 3, 4))
    profile.record({}, 0.1, False, "1")
    with pytest.raises(Exception):  # noqa: B017 - whatever the file system says
        profile.flush()
    profile.record({}, 0.2, False, "1")
    store.unlink()
    profile.flush()
    profile.flush()
    assert read_profile(settings).query("question == @RISK")["count"].sum() == 2


@pytest.fixture
def served_home(web_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return web_home


def test_the_server_counts_every_prediction_and_shows_small_counts_as_less_than_ten(
        served_home: Settings, dev_frame: pd.DataFrame) -> None:
    people = rows_from(dev_frame, 23, seed=3)
    web = WebSettings(port=0, replica="test-replica", profile_flush_seconds=3600)
    before = read_profile(served_home)
    before_count = int(before.loc[before["question"] == RISK, "count"].sum()) if not before.empty else 0
    with BackgroundServer(served_home, web) as server:
        for row in people[:15]:
            assert httpx.post(f"{server.url}/api/v1/predict?explain=false", json=row).status_code == 200
    # Stopped: the counts are written at shutdown. A second start counts on top of them.
    with BackgroundServer(served_home, web) as server:
        for row in people[15:]:
            assert httpx.post(f"{server.url}/api/v1/predict", json=row).status_code == 200
        refused = httpx.post(f"{server.url}/api/v1/predict", json={**people[0], "bmi": 500})
        assert refused.status_code == 422  # refused answers are not counted
    profile = read_profile(served_home)
    assert int(profile.loc[profile["question"] == RISK, "count"].sum()) == before_count + 23
    for name in FEATURE_NAMES:
        assert int(profile.loc[profile["question"] == name, "count"].sum()) == before_count + 23

    with BackgroundServer(served_home, web) as server:
        served = httpx.get(f"{server.url}/api/v1/monitor/served", auth=("admin", PASSWORD)).json()
        page = httpx.get(f"{server.url}/monitor", auth=("admin", PASSWORD)).text
    counts = [r["count"] for r in served["answers"]] + [r["requests"] for r in served["requests_by_day"]]
    assert "<10" in counts
    assert all(c == "<10" or c >= 10 for c in counts)  # nothing below 10 as a number
    assert "People served" in page and "&lt;10" in page
