"""``heartrisk check`` and the check after every scheduled batch inference: judge, keep, alert.

One run builds the monitoring report (the dashboard's), reads the job record, judges every condition
(:mod:`heartrisk.monitoring.checks`), appends the verdicts to the history and sends one alert for the
failed conditions that were not alerted within the cooldown (:mod:`heartrisk.runtime.alerts`).
"""

from __future__ import annotations

from datetime import datetime

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.monitoring.check_history import save_run
from heartrisk.monitoring.checks import CheckRun, CheckSettings, evaluate
from heartrisk.monitoring.drift import DriftSettings
from heartrisk.monitoring.snapshot import ReportSettings, build_snapshot
from heartrisk.runtime.alerts import Alerter, AlertSettings, Problem
from heartrisk.runtime.state import JobState


def run_check(settings: Settings, config: CheckSettings | None = None,
              report: ReportSettings | None = None, alerts: AlertSettings | None = None,
              now: datetime | None = None) -> CheckRun:
    """Judge every condition now, keep the result, alert on failures; returns the run."""
    now = now or utc_now()
    config = config or CheckSettings()
    # No condition reads the SHAP sample: explain as few rows as the report allows.
    report = report or ReportSettings(
        shap_rows=10, served_drift=DriftSettings(min_rows=config.served_min_rows))
    snap = build_snapshot(settings, report, now=now)
    jobs = JobState(settings).jobs()
    run = evaluate(snap, jobs, config, now)
    save_run(settings, run)
    problems = [Problem(f"check:{r.name}", f"check {r.name} failed", r.detail) for r in run.failed]
    if problems:
        Alerter(settings, alerts).alert(problems, now)
    return run


def alert_job_gave_up(settings: Settings, name: str, retries: int, error: str,
                      alerts: AlertSettings | None = None) -> None:
    """A scheduled job failed its run and all its retries: one alert (per job and cooldown)."""
    Alerter(settings, alerts).alert([Problem(f"job:{name}", f"job {name} failed",
                                             f"failed after {retries} retries: {error}")])
