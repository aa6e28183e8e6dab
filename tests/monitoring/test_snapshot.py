"""One report: what batch inference saves and what the dashboard shows are the same snapshot."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from heartrisk.config import Settings
from heartrisk.jobs.infer import RECENT_ROWS, run_infer
from heartrisk.monitoring.snapshot import ReportSettings, build_snapshot
from heartrisk.store.groups import HEART, open_group
from heartrisk.web.app import create_app
from heartrisk.web.guard.auth import PASSWORD_ENV

PASSWORD = "snapshot-test-password"


def test_infer_saves_the_report_the_dashboard_shows(trained: Settings,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = open_group(trained, HEART).read(columns=["event_time"])["event_time"].max().to_pydatetime()
    result = run_infer(trained, hours=48, now=now)
    assert result.inserted == 6000
    folder = trained.monitoring_dir
    saved = json.loads((folder / "summary.json").read_text())

    snap = build_snapshot(trained, ReportSettings(hours=48, recent_rows=RECENT_ROWS), now=now)
    assert saved["model"] == snap.model and saved["generated_at"] == now.isoformat()
    assert saved["metrics_all"] == pytest.approx(snap.metrics_all, nan_ok=True)
    assert saved["metrics_window"] == pytest.approx(snap.metrics_window, nan_ok=True)
    assert saved["drift"]["drifted"] == snap.drift.drifted
    drift = pd.read_csv(folder / "drift.csv")
    assert drift["value"].tolist() == pytest.approx(snap.drift.frame()["value"].tolist(), nan_ok=True)
    recent = pd.read_csv(folder / "recent_predictions.csv")
    assert recent["record_id"].tolist() == snap.recent["record_id"].tolist() and len(recent) == RECENT_ROWS
    assert len(pd.read_csv(folder / "performance.csv")) == len(snap.daily)

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with TestClient(create_app(trained), base_url="http://127.0.0.1") as client:  # an allowed Host
        shown = client.get("/api/v1/monitor/summary", params={"hours": 48}, auth=("admin", PASSWORD)).json()
    assert shown["model"] == saved["model"]
    assert shown["metrics_all"] == pytest.approx(saved["metrics_all"], nan_ok=True)
    assert shown["drifted"] == saved["drift"]["drifted"]
    assert shown["predictions"]["champion_rows"] == 6000


def test_a_synthetic_row_that_copies_a_real_one_is_never_listed(trained: Settings) -> None:
    """Issue 14, item 5: a synthetic row equal to a Kaggle row (17 answers and the diagnosis) is someone's
    answers; the recent-predictions list and the SHAP rows leave it out, a near copy stays listed."""
    from datetime import timedelta

    from heartrisk.jobs.daily import synthetic_rows
    from heartrisk.monitoring.reads import copies_of_real

    heart = open_group(trained, HEART)
    kaggle = heart.read(sources=["kaggle"]).dropna().head(2).reset_index(drop=True)
    kaggle.loc[1, "bmi"] = float(kaggle.loc[1, "bmi"]) + 0.37  # differs in one answer: not a copy
    later = heart.read(columns=["event_time"])["event_time"].max().to_pydatetime() + timedelta(hours=1)
    rows = synthetic_rows(kaggle, "copytest", later)
    heart.insert(rows)
    copy, near = rows["record_id"].tolist()
    assert copies_of_real(trained, rows["record_id"]) == {copy}

    run_infer(trained, hours=48, now=later)
    snap = build_snapshot(trained, ReportSettings(hours=48, recent_rows=RECENT_ROWS), now=later)
    listed = snap.recent["record_id"].tolist()
    assert near in listed and copy not in listed and len(listed) == RECENT_ROWS
    saved = pd.read_csv(trained.monitoring_dir / "recent_predictions.csv")["record_id"].tolist()
    assert near in saved and copy not in saved
