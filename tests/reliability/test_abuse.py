"""Abuse of the shared outcomes: rate limits per client (API and form), the daily quarantine of
implausible submissions, and 1,000 wrongly labelled submissions that cannot move the champion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.jobs.daily import run_daily
from heartrisk.runtime.status import collect_status
from heartrisk.sources.quarantine import quarantine_status
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_USER, QUARANTINE, open_group
from heartrisk.web.app import WebSettings
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import ANSWERS, copy_home, stored_submissions


def user_ids_in_heart(settings: Settings) -> set[str]:
    ids = open_group(settings, HEART).read(columns=["record_id"], sources=["user"])["record_id"]
    return {i.removeprefix("user:") for i in ids}


def write_unchecked(settings: Settings, answers: dict[str, object], heart_disease: bool) -> str:
    """A heart_user row written past the spec check (an older spec, another writer)."""
    submission_id = str(uuid.uuid4())
    row = dict.fromkeys(FEATURE_NAMES) | answers
    row |= {"submission_id": submission_id, "submitted_at": datetime.now(UTC), "heart_disease": heart_disease}
    write_deltalake(open_group(settings, HEART_USER).uri,
                    pa.Table.from_pylist([row], schema=HEART_USER.schema), mode="append")
    return submission_id


# ------------------------------------------------------------------------------------ quarantine
def test_the_merge_quarantines_repeats_empty_and_out_of_spec(ingested: Settings) -> None:
    settings = ingested
    flood = [add_submission(settings, ANSWERS, True) for _ in range(8)]       # 8 identical: held
    fine = [add_submission(settings, {**ANSWERS, "bmi": 30.0}, False) for _ in range(5)]  # 5: merged
    other = add_submission(settings, {"bmi": 22.0, "sex": "Female"}, False)
    empty = add_submission(settings, {}, True)
    bad = write_unchecked(settings, {"bmi": 500.0, "sex": "Female"}, False)

    result = run_daily(settings, synthetic=0)
    assert (result.user_rows, result.quarantined) == (6, 10)
    assert user_ids_in_heart(settings) == {*fine, other}
    held = open_group(settings, QUARANTINE).read().set_index("submission_id")
    assert set(held.index) == {*flood, empty, bad}
    assert held.loc[flood[0], "reason"].startswith("repeated: the same answers and diagnosis 8 times on ")
    assert held.loc[empty, "reason"] == "no answers"
    assert held.loc[bad, "reason"].startswith("out of spec: bmi 500.0 is out of range")
    assert held.loc[bad, "bmi"] == 500.0 and held.loc[bad, "sex"] == "Female"  # kept whole

    again = run_daily(settings, synthetic=0)  # nothing is merged or quarantined twice
    assert (again.user_rows, again.quarantined) == (0, 0)
    assert len(open_group(settings, QUARANTINE).read()) == 10
    assert quarantine_status(settings)["by_rule"] == {"out of spec": 1, "no answers": 1, "repeated": 8}
    assert collect_status(settings)["quarantine"]["rows"] == 10


# ------------------------------------------------------------------------------------ rate limits
def limited(home: Settings, limit: int) -> BackgroundServer:
    return BackgroundServer(home, WebSettings(port=0, security=SecuritySettings(submission_limit=limit)))


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    return copy_home(trained_home, tmp_path / "home")


def test_submissions_are_limited_per_client_and_invalid_ones_cost_nothing(home: Settings) -> None:
    body = {**ANSWERS, "heart_disease": True, "consent": True}
    with limited(home, 3) as server, httpx.Client(base_url=server.url) as client:
        invalid = [client.post("/api/v1/submissions", json={**body, "bmi": -1}) for _ in range(5)]
        assert [r.status_code for r in invalid] == [422] * 5
        answers = [client.post("/api/v1/submissions", json=body) for _ in range(5)]
        assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
        refused = answers[-1]
        assert "too many submissions" in refused.json()["detail"]
        assert 3500 < int(refused.headers["retry-after"]) <= 3600
        assert client.post("/api/v1/predict", json=ANSWERS).status_code == 200  # predictions unaffected
        other = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:
            assert other.post("/api/v1/submissions", json=body).status_code == 201  # another client
    assert len(stored_submissions(home)) == 4


def test_the_form_share_is_limited_too(home: Settings) -> None:
    with limited(home, 2) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        share = form_fn_index(server.app, "share")
        check = form_fn_index(server.app, "predict")
        results = [form_event(client, share, [*FORM_ANSWERS, "Yes", True], f"s{i}") for i in range(3)]
        assert [status for status, _ in results] == [200, 200, 429]
        assert all(done and done["success"] for _, done in results[:2])
        status, done = form_event(client, check, FORM_ANSWERS, "risk")  # a risk check is not limited
        assert status == 200 and done and done["success"]
        huge = client.post("/gradio_api/queue/join", content=b'{"data": ["' + b"x" * 300_000 + b'"]}',
                           headers={"content-type": "application/json"})
        assert huge.status_code == 413
    assert len(stored_submissions(home)) == 2


# ------------------------------------------------------------------------------------ the champion
def adversarial_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n different young, healthy profiles all labelled as having heart disease (the wrong way), with
    BMI, days, sleep, sex and age varied so no two are exact repeats."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append({
            "submission_id": str(uuid.uuid4()), "submitted_at": datetime.now(UTC),
            "bmi": round(20 + 5 * i / n, 3), "smoking": "No", "alcohol_drinking": "No", "stroke": "No",
            "physical_health": 0.0, "mental_health": float(rng.integers(0, 5)), "diff_walking": "No",
            "sex": str(rng.choice(["Female", "Male"])), "age_category": str(rng.choice(["18-24", "25-29",
                                                                                         "30-34"])),
            "race": "White", "diabetic": "No", "physical_activity": "Yes", "gen_health": "Excellent",
            "sleep_time": float(rng.integers(7, 9)), "asthma": "No", "kidney_disease": "No",
            "skin_cancer": "No", "heart_disease": True,
        })
    return pd.DataFrame(rows)[HEART_USER.columns]


@pytest.mark.reliability
def test_1000_wrongly_labelled_submissions_cannot_move_the_champion(home: Settings) -> None:
    from heartrisk.jobs.train import TrainSettings, train
    from heartrisk.model.registry import champion_version

    # One client sending them all: the default rate limit stores 120 and refuses the rest.
    flood = {**ANSWERS, "heart_disease": False, "consent": True}
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        statuses = [client.post("/api/v1/submissions", json={**flood, "bmi": 20 + i / 100}).status_code
                    for i in range(150)]
        before = client.post("/api/v1/predict", json=ANSWERS).json()
    assert statuses.count(201) == SecuritySettings().submission_limit and set(statuses) == {201, 429}

    # The worst case, many addresses: 1,000 varied wrong labels all stored (one batch), plus the
    # same answers sent 400 times (exact repeats, which the merge holds back).
    open_group(home, HEART_USER).insert(adversarial_rows(1000))
    repeats = adversarial_rows(1).assign(bmi=26.0)  # a BMI none of the 1,000 has
    copies = pd.concat([repeats] * 400, ignore_index=True)
    copies["submission_id"] = [str(uuid.uuid4()) for _ in range(400)]
    open_group(home, HEART_USER).insert(copies)

    merged = run_daily(home, synthetic=0)
    assert merged.quarantined == 400 and merged.user_rows == 1000 + 120
    retrained = train(home, TrainSettings.for_quick())
    assert not retrained.promoted, retrained.decision
    assert retrained.decision.startswith("kept out") and "kaggle test records" in retrained.decision
    assert champion_version(home) == "1"
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/api/v1/predict", json=ANSWERS).json() == before  # the served model held
