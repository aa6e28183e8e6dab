"""Abuse of the shared outcomes: 1,000 wrongly labelled submissions cannot move the champion
(the rate limits are in tests/web/test_limits.py, the quarantine in tests/sources/test_quarantine.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.jobs.daily import run_daily
from heartrisk.store.groups import HEART_USER, open_group
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.web import ANSWERS, copy_home

pytestmark = pytest.mark.reliability


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    return copy_home(trained_home, tmp_path / "home")


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
