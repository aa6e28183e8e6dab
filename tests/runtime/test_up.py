"""`heartrisk up` as a user runs it: a real subprocess on a temporary home, a schedule of seconds.

From an empty home it ingests the 6,000-row sample, trains (quick settings), serves the form and the
API, fits a tiny synthesizer and runs the feature pipeline and batch inference on schedule. It is then
killed with SIGKILL in the middle of a job and started again: the restart serves from the full home,
runs the cut-short job again, and the tables hold no duplicate row; no lock is left behind. Finally
SIGINT (Ctrl-C) stops it cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from heartrisk.config import Settings
from heartrisk.runtime.state import JobState
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
from support.process import free_port, responds

pytestmark = pytest.mark.slow

EVERY = "every 6s"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen[bytes],
             log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"`heartrisk up` exited ({proc.returncode}) while waiting for {what}:\n"
                        + log.read_text()[-4000:])
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s:\n" + log.read_text()[-4000:])
        time.sleep(0.05)


def scheduled_runs(log: Path, name: str) -> int:
    """Runs of ``name`` started by the clock (not the runs made once at start)."""
    return log.read_text().count(f"{name}: started (schedule)")


class Up:
    """`heartrisk up --quick` on a home, its output in a log file."""

    def __init__(self, home: Path, csv: Path, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HEARTRISK_", "MLFLOW_"))}
        env.update(HEARTRISK_HOME=str(home), HEARTRISK_CSV=str(csv), OMP_WAIT_POLICY="PASSIVE")
        self.log = log
        self.base = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "heartrisk", "up", "--quick", "--port", str(port),
                 "--daily", EVERY, "--infer", EVERY, "--retrain", "off", "--backoff", "1",
                 "--stop-grace", "60"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_for(condition, timeout, what, self.proc, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_up_serves_runs_jobs_on_schedule_and_survives_kill_9(home: Path, sample_csv: Path,
                                                              tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    port = free_port()
    jobs = JobState(Settings(home=home)).jobs
    first = Up(home, sample_csv, port, log)
    try:
        # From an empty home: ingest, train, then the form and the API answer.
        first.wait(lambda: responds(first.base + "/api/v1/health"), 420, "health answer")
        assert responds(first.base + "/")
        status = subprocess.run([sys.executable, "-m", "heartrisk", "status", "--json"],
                                env={**os.environ, "HEARTRISK_HOME": str(home)},
                                capture_output=True, text=True, check=True)
        up_state = json.loads(status.stdout)["schedule"]["up"]
        assert up_state["running"] and up_state["urls"]["form"] == first.base + "/"

        # The feature pipeline and inference each run at least twice on schedule.
        # One run of each at start (they had never run), then at least two on schedule.
        first.wait(lambda: all(scheduled_runs(log, n) >= 2 and jobs()[n].get("runs", 0) >= 3
                               for n in ("daily", "infer")), 240, "two scheduled runs each")
        settings = Settings(home=home)
        assert open_group(settings, HEART_PREDICTIONS).count() > 0
        state = jobs()
        assert state["synth"]["last_outcome"] == "ok"
        assert state["daily"]["failures"] == 0 and state["infer"]["failures"] == 0

        # kill -9 in the middle of a job.
        victim = first.wait(lambda: next((n for n in ("daily", "infer")
                                          if jobs().get(n, {}).get("last_outcome") == "running"),
                                         None), 60, "a running job")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()
    assert jobs()[victim]["last_outcome"] == "running"  # as the dead process left it

    assert_no_stale_lock(settings)

    # Restart on the full home: it serves, runs the cut-short job again, and keeps to the schedule.
    runs_before = {n: jobs()[n]["runs"] for n in ("daily", "infer")}
    second = Up(home, sample_csv, port, log)
    try:
        second.wait(lambda: responds(second.base + "/"), 120, "the form after a restart")
        second.wait(lambda: jobs()[victim].get("runs", 0) > runs_before[victim]
                    and jobs()[victim].get("last_outcome") == "ok", 120, f"{victim} run again")
        text = log.read_text()
        assert f"{victim}: queued to run now (interrupted)" in text
        second.wait(lambda: all(jobs()[n]["runs"] >= runs_before[n] + 2 for n in ("daily", "infer")),
                    120, "scheduled runs after the restart")
        # Ctrl-C stops cleanly: exit 0, recorded as stopped.
        second.proc.send_signal(signal.SIGINT)
        assert second.proc.wait(timeout=90) == 0
    finally:
        second.stop()
    up_state = JobState(settings).read()["up"]
    assert up_state["phase"] == "stopped"
    assert all(job.get("last_outcome") != "running" for job in jobs().values())

    # Nothing twice: every record once in heart, every (record, model version) once in predictions.
    heart = open_group(settings, HEART).read(columns=["record_id", "source"])
    assert heart["record_id"].is_unique
    assert (heart["source"] == "synthetic").sum() >= 500
    predictions = open_group(settings, HEART_PREDICTIONS).read(columns=["record_id", "model_version"])
    assert len(predictions) > 0
    assert not predictions.duplicated().any()
    assert set(predictions["record_id"]) <= set(heart["record_id"])

    assert_no_stale_lock(settings)


def assert_no_stale_lock(settings: Settings) -> None:
    """The job lock and the one-`up`-per-home lock are free at once (the OS released them)."""
    for name in ("jobs.lock", "up.lock"):
        lock = FileLock(str(settings.locks_dir / name))
        lock.acquire(timeout=1)
        lock.release()
