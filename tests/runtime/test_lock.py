"""The job lock every way of running a job takes: one job at a time per home, each run recorded,
another process named while it holds the lock, no stale lock after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.runtime.lock import JobBusyError, job_lock, run_job
from heartrisk.runtime.state import JobState
from heartrisk.runtime.status import schedule_status
from support.runtime import hold_lock, wait_for


def test_job_lock_records_success_and_failure(settings: Settings) -> None:
    with job_lock(settings, "daily") as run:
        run.summary = "2 rows"
    record = JobState(settings).job("daily")
    assert (record["last_outcome"], record["last_summary"], record["runs"]) == ("ok", "2 rows", 1)

    with pytest.raises(ZeroDivisionError), job_lock(settings, "daily"):
        1 / 0  # noqa: B018
    record = JobState(settings).job("daily")
    assert record["last_outcome"] == "failed"
    assert record["last_error"].startswith("ZeroDivisionError")
    shown = schedule_status(settings)["jobs"]["daily"]
    assert shown["last_outcome"] == "failed" and "ZeroDivisionError" in shown["last_error"]
    assert shown["failures_in_a_row"] == 1






def test_lock_of_another_process_blocks_then_names_the_holder(settings: Settings) -> None:
    proc = hold_lock(settings, 1.5)
    messages: list[str] = []
    with pytest.raises(JobBusyError, match="job 'infer'"), job_lock(
            settings, "daily", wait=0.2, on_wait=messages.append):
        pass
    assert "waiting for job 'infer'" in messages[0]
    started = time.monotonic()
    with job_lock(settings, "daily"):  # waits for the holder to finish, then runs
        assert JobState(settings).job("infer")["last_outcome"] == "ok"
    assert time.monotonic() - started > 0.3
    proc.wait()


def test_kill_9_leaves_no_stale_lock_and_the_run_shows_interrupted(settings: Settings) -> None:
    proc = hold_lock(settings, 60)
    assert JobState(settings).job("infer")["last_outcome"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    with job_lock(settings, "daily", wait=2):
        pass
    assert time.monotonic() - started < 1.5
    assert schedule_status(settings)["jobs"]["infer"]["last_outcome"] == "interrupted"
    assert JobState(settings).mark_interrupted() == ["infer"]


def test_a_hand_run_daily_waits_for_the_running_job(ingested: Settings) -> None:
    """`heartrisk daily` run by hand while a scheduled job holds the lock waits, then runs."""
    settings = ingested
    env = {**os.environ, "HEARTRISK_HOME": str(settings.home), "OMP_WAIT_POLICY": "PASSIVE"}
    with job_lock(settings, "infer", trigger="schedule"):
        proc = subprocess.Popen([sys.executable, "-m", "heartrisk", "daily", "--synthetic", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stderr is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        wait_for(lambda: any("waiting for job 'infer'" in line for line in lines), timeout=120)
        time.sleep(0.5)
        assert proc.poll() is None
        released = datetime.now(UTC)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines)
    record = JobState(settings).job("daily")
    assert record["last_outcome"] == "ok" and record["last_trigger"] == "manual"
    assert datetime.fromisoformat(record["last_start"]) >= released


def test_run_job_records_the_result_summary(settings: Settings) -> None:
    class Done:
        summary = "3 rows scored"

    result = run_job(settings, "infer", Done)
    assert isinstance(result, Done)
    record = JobState(settings).job("infer")
    assert (record["last_outcome"], record["last_summary"]) == ("ok", "3 rows scored")


def test_a_job_another_machine_runs_stops_with_the_holder_and_its_expiry(tmp_path: Path) -> None:
    """Two homes (two machines) on one store: the job lock is per home, the lease is in the store."""
    from heartrisk.runtime.lock import LeaseBusyError
    from heartrisk.runtime.status import collect_status

    store = str(tmp_path / "shared-store")
    a = Settings(home=tmp_path / "a", store_uri=store)
    b = Settings(home=tmp_path / "b", store_uri=store, lease_wait_s=0)
    with job_lock(a, "daily"):
        with pytest.raises(LeaseBusyError) as busy, job_lock(b, "daily"):
            pytest.fail("ran beside the other machine's run")
        assert "job 'daily' on" in str(busy.value) and "UTC" in str(busy.value)
        assert "daily" not in JobState(b).read()["jobs"]  # nothing recorded for the run that did not run
        with job_lock(b, "infer"):  # another job takes another lease
            pass
        assert collect_status(b)["leases"]["job-daily"]["state"] == "held"
    with job_lock(b, "daily") as run:  # given back at the end of a's run
        run.summary = "ran after"
    assert JobState(b).job("daily")["last_outcome"] == "ok"
