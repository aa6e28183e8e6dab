"""The one MLflow run context: FINISHED on success, FAILED on an error before the job's write,
RUNNING after it (the next run settles it), values logged through the home's own client."""

from __future__ import annotations

import math

import mlflow
import pytest

from heartrisk import tracking
from heartrisk.config import Settings


def status(settings: Settings, run_id: str) -> str:
    return tracking.client(settings).get_run(run_id).info.status


def test_a_run_finishes_and_keeps_what_was_logged(settings: Settings) -> None:
    before = mlflow.get_tracking_uri()
    with tracking.run(settings, "tests", "ok", tags={"job": "test"}) as run:
        run.log_params({"rows": 3, "what": "x"})
        run.log_metrics({"auc": 0.8, "missing": None, "nan": math.nan, "inf": math.inf})
        run.log_history([("loss", 1.0, 0), ("loss", 0.5, 1)])
        run.set_tags({"decision": "promoted"})
    logged = tracking.client(settings).get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "ok"
    assert logged.data.params == {"rows": "3", "what": "x"}
    assert logged.data.metrics == {"auc": 0.8, "loss": 0.5}  # non-finite values left out
    assert logged.data.tags["job"] == "test" and logged.data.tags["decision"] == "promoted"
    assert tracking.find_runs(settings, "tests")[0].info.run_id == run.run_id
    assert mlflow.get_tracking_uri() == before  # nothing process-wide was set


def test_a_failure_before_the_write_is_failed_and_after_it_stays_running(settings: Settings) -> None:
    started: list[tracking.TrackedRun] = []

    def job(write: bool) -> None:
        with tracking.run(settings, "tests", "job") as run:
            started.append(run)
            if write:
                run.committed()
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        job(write=False)
    with pytest.raises(OSError, match="disk full"):
        job(write=True)
    early, late = started
    assert status(settings, early.run_id) == "FAILED"
    assert status(settings, late.run_id) == "RUNNING"  # for the next run to settle, never to redo
    tracking.attach(settings, late.run_id).finish()
    assert status(settings, late.run_id) == "FINISHED"
