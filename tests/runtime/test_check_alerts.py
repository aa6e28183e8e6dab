"""Checks and alerts end to end: a shifted crowd at the real server trips the served-population drift
check, and exactly one webhook and one e-mail reach real local receivers; a job that fails all its
retries alerts once; `heartrisk check` exits 1."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli.app import app
from heartrisk.config import Settings
from heartrisk.monitoring.check_history import load_history
from heartrisk.monitoring.checks import CheckSettings
from heartrisk.runtime.alerts import Alerter, AlertSettings, Problem
from heartrisk.runtime.check import alert_job_gave_up, run_check
from heartrisk.runtime.schedule import ScheduleSettings
from heartrisk.runtime.scheduler import Job, JobScheduler
from heartrisk.web.app import WebSettings
from heartrisk.web.server import BackgroundServer
from support.people import rows_from
from support.receivers import smtp_receiver, webhook_receiver
from support.runtime import wait_for

OLDEST = "80 or older"


def serve_crowd(settings: Settings, people: list[dict]) -> None:
    with BackgroundServer(settings, WebSettings(port=0, profile_flush_seconds=3600)) as server:
        for row in people:
            assert httpx.post(f"{server.url}/api/v1/predict?explain=false", json=row).status_code == 200


def test_a_crowd_of_80_year_olds_trips_the_served_drift_check_and_alerts_once(
        trained: Settings, dev_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_crowd(trained, rows_from(dev_frame, 150, seed=5, where=dev_frame["AgeCategory"] == OLDEST))
    config = CheckSettings(served_min_rows=100)
    with webhook_receiver() as (url, hooks), smtp_receiver() as (port, mails):
        alerts = AlertSettings(webhook=url, smtp_host="127.0.0.1", smtp_port=port, mail_to="ops@example.org",
                               dashboard_url="http://monitor.example/monitor")
        first = run_check(trained, config, alerts=alerts)
        second = run_check(trained, config, alerts=alerts)  # same problem, within the cooldown
    verdicts = {r.name: r for r in first.results}
    assert verdicts["served_drift"].status == "fail"
    assert "age_category" in verdicts["served_drift"].detail
    assert {r.name: r.status for r in second.results}["served_drift"] == "fail"
    assert len(hooks) == 1 and len(mails) == 1
    assert "check:served_drift" in [p["key"] for p in hooks[0]["problems"]]
    assert hooks[0]["dashboard"] == "http://monitor.example/monitor"
    assert "served_drift" in mails[0]["Subject"] or "served_drift" in mails[0].get_payload()
    assert "http://monitor.example/monitor" in mails[0].get_payload()
    assert [run["passed"] for run in load_history(trained)] == [False, False]

    # The command line: exit 1 on a broken condition, the verdicts as JSON.
    monkeypatch.setenv("HEARTRISK_HOME", str(trained.home))
    monkeypatch.setenv("HEARTRISK_CHECK_SERVED_MIN_ROWS", "100")
    result = CliRunner().invoke(app, ["check", "--json"])
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    assert not printed["passed"]
    assert {r["name"]: r["status"] for r in printed["results"]}["served_drift"] == "fail"


def test_a_bad_check_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTRISK_CHECK_F1_DROP", "lots")
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 2 and "HEARTRISK_CHECK_F1_DROP" in result.output


def test_a_job_that_fails_all_its_retries_sends_one_alert(settings: Settings) -> None:
    settings.ensure_home()
    calls: list[float] = []

    def broken() -> str:
        calls.append(time.monotonic())
        raise RuntimeError("the store is gone")

    with webhook_receiver() as (url, hooks):
        alerts = AlertSettings(webhook=url)
        schedule = ScheduleSettings(daily="off", infer="off", retrain="off", retries=2, backoff_s=0.1,
                                    timezone="UTC")
        scheduler = JobScheduler(settings, schedule, on_gave_up=lambda name, retries, error:
                                 alert_job_gave_up(settings, name, retries, error, alerts))
        scheduler.add(Job("infer", broken))
        scheduler.start()
        try:
            scheduler.run_now("infer")
            wait_for(lambda: len(hooks) >= 1, timeout=30)
            time.sleep(0.5)
            scheduler.run_now("infer")  # fails again, all retries again: same problem, same day
            wait_for(lambda: len(calls) >= 6, timeout=30)
            time.sleep(0.5)
        finally:
            scheduler.shutdown(wait_s=5)
    assert len(calls) == 6  # two runs of three attempts
    assert len(hooks) == 1
    assert hooks[0]["problems"][0]["key"] == "job:infer"
    assert "the store is gone" in hooks[0]["problems"][0]["detail"]


def test_a_channel_that_failed_is_tried_again_alone(settings: Settings) -> None:
    """The webhook took the alert, the mail server was down: the next run sends the mail only."""
    settings.ensure_home()
    problem = Problem(key="check:served_drift", title="served drift", detail="age_category")
    with webhook_receiver() as (url, hooks), smtp_receiver() as (port, mails):
        with socket.socket() as probe:  # a port nobody listens on: the mail server is down
            probe.bind(("127.0.0.1", 0))
            down = probe.getsockname()[1]
        first = Alerter(settings, AlertSettings(webhook=url, smtp_host="127.0.0.1", smtp_port=down,
                                                mail_to="ops@example.org")).alert([problem])
        assert first == [] and len(hooks) == 1 and mails == []  # not all delivered: not done
        config = AlertSettings(webhook=url, smtp_host="127.0.0.1", smtp_port=port, mail_to="ops@example.org")
        second = Alerter(settings, config).alert([problem])
        third = Alerter(settings, config).alert([problem])  # within the cooldown: nothing more
    assert second == [problem] and third == []
    assert len(hooks) == 1 and len(mails) == 1
