"""The scheduler core with tiny real jobs: schedules, the job lock, no overlap, retries, missed runs.

The jobs here append to files or sleep; the lock is the real file lock under the home's locks folder and
other processes are real subprocesses (one killed with SIGKILL while it holds the lock).
"""

from __future__ import annotations

import itertools
import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.runtime.schedule import Schedule, ScheduleSettings
from heartrisk.runtime.scheduler import Job, JobScheduler
from heartrisk.runtime.state import JobState
from heartrisk.runtime.status import schedule_status
from support.runtime import hold_lock, wait_for

UTC_TZ = "UTC"




def fast(**values: object) -> ScheduleSettings:
    base: dict[str, object] = {"daily": "off", "infer": "off", "retrain": "off", "retries": 2,
                               "backoff_s": 0.3, "timezone": UTC_TZ}
    base.update(values)
    return ScheduleSettings(**base)


# ------------------------------------------------------------------------------------------ schedules






# ------------------------------------------------------------------------------------------ job lock










# ------------------------------------------------------------------------------------------ scheduler
def interval_log(path: Path) -> list[tuple[float, float]]:
    lines = path.read_text().split() if path.exists() else []
    return [tuple(map(float, line.split(","))) for line in lines]  # type: ignore[misc]


def sleeper(path: Path, seconds: float):
    def run() -> str:
        start = time.time()
        time.sleep(seconds)
        with path.open("a") as handle:
            handle.write(f"{start},{time.time()}\n")
        return "slept"
    return run


def test_jobs_never_overlap(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    scheduler = JobScheduler(settings, fast())
    for name in ("daily", "infer"):
        scheduler.add(Job(name, sleeper(log, 0.3), Schedule.parse("every 0.2s")))
    scheduler.start()
    try:
        wait_for(lambda: len(interval_log(log)) >= 6)
    finally:
        scheduler.shutdown(wait_s=5)
    runs = sorted(interval_log(log))
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start >= end, f"a run started at {start} before the previous ended at {end}"
    state = JobState(settings).read()["jobs"]
    assert state["daily"]["runs"] >= 2 and state["infer"]["runs"] >= 2


def test_failed_job_is_retried_with_growing_backoff_and_shown_in_status(settings: Settings) -> None:
    attempts: list[float] = []
    errors_seen: list[str] = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 2:  # status during the second attempt shows the first one's error
            errors_seen.append(schedule_status(settings)["jobs"]["infer"].get("last_error", ""))
        if len(attempts) < 3:
            raise RuntimeError(f"store unreachable (attempt {len(attempts)})")
        return "scored"

    scheduler = JobScheduler(settings, fast(backoff_s=0.4, retries=3))
    scheduler.add(Job("infer", flaky, None, run_at_start=lambda: True))
    scheduler.start()
    try:
        wait_for(lambda: JobState(settings).job("infer").get("last_outcome") == "ok")
    finally:
        scheduler.shutdown(wait_s=5)
    assert len(attempts) == 3
    first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_gap >= 0.4 and second_gap >= 0.8, (first_gap, second_gap)
    assert errors_seen == ["RuntimeError: store unreachable (attempt 1)"]
    record = JobState(settings).job("infer")
    assert (record["failures"], record["last_summary"], record["runs"]) == (0, "scored", 3)


def test_a_job_that_keeps_failing_gives_up_after_the_retries(settings: Settings) -> None:
    attempts: list[float] = []

    def broken() -> None:
        attempts.append(time.monotonic())
        raise ValueError("bad batch")

    scheduler = JobScheduler(settings, fast(backoff_s=0.1, retries=2))
    scheduler.add(Job("daily", broken, None, run_at_start=lambda: True))
    scheduler.start()
    try:
        wait_for(lambda: JobState(settings).job("daily").get("failures") == 3)
        time.sleep(0.6)  # a fourth attempt would have come by now
    finally:
        scheduler.shutdown(wait_s=5)
    assert len(attempts) == 3
    shown = schedule_status(settings)["jobs"]["daily"]
    assert shown["last_outcome"] == "failed" and shown["last_error"] == "ValueError: bad batch"
    assert shown["failures_in_a_row"] == 3


def test_a_run_missed_while_down_runs_once_at_start(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    state = JobState(settings)
    # daily was due every 10 minutes: six runs missed, one runs. infer ran a minute ago: not due.
    state.update_job("daily", last_start=hour_ago, last_outcome="ok", registered=hour_ago)
    state.update_job("infer", last_start=datetime.now(UTC).isoformat(), last_outcome="ok",
                     registered=hour_ago)
    scheduler = JobScheduler(settings, fast())
    scheduler.add(Job("daily", sleeper(log, 0.0), Schedule.parse("every 10m")))
    scheduler.add(Job("infer", sleeper(tmp_path / "infer.txt", 0.0), Schedule.parse("every 10m")))
    queued = scheduler.start()
    try:
        wait_for(lambda: len(interval_log(log)) >= 1)
        time.sleep(0.5)
        next_runs = scheduler.next_runs()
    finally:
        scheduler.shutdown(wait_s=5)
    assert queued == ["daily"]
    assert len(interval_log(log)) == 1
    assert not (tmp_path / "infer.txt").exists()
    assert JobState(settings).job("daily")["last_trigger"] == "missed"
    assert next_runs["infer"] is not None and next_runs["infer"] > datetime.now(UTC)


def test_a_run_interrupted_by_a_crash_runs_again_at_start(settings: Settings, tmp_path: Path) -> None:
    proc = hold_lock(settings, 60)  # records infer as running, under the lock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log = tmp_path / "runs.txt"
    scheduler = JobScheduler(settings, fast())
    scheduler.add(Job("infer", sleeper(log, 0.0), Schedule.parse("every 1h")))
    assert scheduler.start() == ["infer"]
    try:
        wait_for(lambda: len(interval_log(log)) == 1)
    finally:
        scheduler.shutdown(wait_s=5)
    assert JobState(settings).job("infer")["last_trigger"] == "interrupted"


def interrupted_infer(settings: Settings) -> datetime:
    """The state a process killed during an infer run leaves behind; returns when that run started."""
    proc = hold_lock(settings, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return datetime.fromisoformat(JobState(settings).job("infer")["last_start"])


def test_an_interrupted_run_that_had_finished_its_work_is_not_run_again(settings: Settings,
                                                                         tmp_path: Path) -> None:
    started = interrupted_infer(settings)
    asked: list[datetime] = []
    log = tmp_path / "runs.txt"
    scheduler = JobScheduler(settings, fast())
    scheduler.add(Job("infer", sleeper(log, 0.0), Schedule.parse("every 1h"),
                      finished_since=lambda moment: asked.append(moment) or True))
    try:
        assert scheduler.start() == []
        time.sleep(0.5)
    finally:
        scheduler.shutdown(wait_s=5)
    assert asked == [started]
    assert not log.exists()
    record = JobState(settings).job("infer")
    assert record["last_outcome"] == "ok"
    assert record["last_summary"] == "finished before the process stopped"


def test_an_interrupted_run_runs_again_when_the_job_cannot_tell_if_it_finished(
        settings: Settings, tmp_path: Path) -> None:
    interrupted_infer(settings)

    def cannot_tell(moment: datetime) -> bool:
        raise OSError("registry unreachable")

    log = tmp_path / "runs.txt"
    scheduler = JobScheduler(settings, fast())
    scheduler.add(Job("infer", sleeper(log, 0.0), Schedule.parse("every 1h"), finished_since=cannot_tell))
    assert scheduler.start() == ["infer"]
    try:
        wait_for(lambda: len(interval_log(log)) == 1)
    finally:
        scheduler.shutdown(wait_s=5)


def test_shutdown_drops_queued_runs_and_waits_for_the_running_one(settings: Settings,
                                                                   tmp_path: Path) -> None:
    log = tmp_path / "runs.txt"
    scheduler = JobScheduler(settings, fast())
    for name in ("daily", "infer", "retrain"):
        scheduler.add(Job(name, sleeper(log, 0.5), None, run_at_start=lambda: True))
    scheduler.start()
    wait_for(lambda: scheduler.current() is not None)
    assert scheduler.shutdown(wait_s=5) is None
    time.sleep(0.7)
    assert len(interval_log(log)) == 1
    jobs = json.loads((settings.home / "jobs.json").read_text())["jobs"]
    assert all(job.get("next_run") is None for job in jobs.values())
    assert not any(t.name.startswith("APScheduler") for t in threading.enumerate() if t.is_alive())





def test_the_next_scheduled_run_leaves_out_runs_queued_now(settings: Settings, tmp_path: Path) -> None:
    """`up` prints each job's next scheduled run under "running now, in the background: …"; the run
    queued at start is not its next scheduled run (`up` printed "next run <now>" for a job whose run
    was still queued, and the schedule for one whose run a worker had taken: it changed from run to
    run)."""
    scheduler = JobScheduler(settings, fast())
    for name in ("daily", "infer"):
        scheduler.add(Job(name, sleeper(tmp_path / "runs.txt", 1.0), Schedule.parse("every 1h"),
                          run_at_start=lambda: True))
    assert scheduler.start() == ["daily", "infer"]
    try:
        scheduled = scheduler.next_runs(scheduled_only=True)  # as `up` asks: right after the start
    finally:
        scheduler.shutdown(wait_s=5)
    in_50_min = datetime.now(UTC) + timedelta(minutes=50)
    assert all(when is not None and when > in_50_min for when in scheduled.values()), scheduled


def test_a_job_whose_workers_get_ctrl_c_is_one_line_and_recorded_interrupted(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C in a terminal reaches a job's worker processes too (one process group); joblib raises
    their KeyboardInterrupt in the job's thread while the main thread stops. Before, APScheduler
    logged it as a ~100-line traceback ("raised an exception") while `heartrisk up` was stopping."""
    scheduler = JobScheduler(settings, fast())
    stopper: list[threading.Thread] = []

    def interrupted() -> None:
        stopper.append(threading.Thread(target=scheduler.shutdown, kwargs={"wait_s": 10}))
        stopper[0].start()  # the main thread's stop, as Ctrl-C starts it
        raise KeyboardInterrupt

    scheduler.add(Job("train", interrupted, None, run_at_start=lambda: True))
    with caplog.at_level(logging.INFO):
        scheduler.start()
        try:
            wait_for(lambda: JobState(settings).job("train").get("last_outcome") == "interrupted")
            wait_for(lambda: bool(stopper) and not stopper[0].is_alive())
        finally:
            scheduler.shutdown(wait_s=5)
    assert not [r for r in caplog.records if r.exc_info or "raised an exception" in r.getMessage()]
    said = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(said) == 1 and "runs again at the next start" in said[0]
    assert JobState(settings).job("train").get("next_retry") is None


def test_a_job_whose_workers_alone_were_interrupted_is_retried(settings: Settings) -> None:
    """No stop follows (someone signalled the workers, not `up`): the run is retried like a failure."""
    attempts: list[float] = []

    def interrupted_once() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise KeyboardInterrupt
        return "trained"

    scheduler = JobScheduler(settings, fast(backoff_s=0.1))
    scheduler.add(Job("train", interrupted_once, None, run_at_start=lambda: True))
    scheduler.start()
    try:
        wait_for(lambda: JobState(settings).job("train").get("last_outcome") == "ok", timeout=30)
    finally:
        scheduler.shutdown(wait_s=5)
    assert len(attempts) == 2


@pytest.mark.parametrize("stopping", [True, False])
def test_a_pool_broken_by_ctrl_c_is_interrupted_and_a_broken_pool_alone_a_failure(
        settings: Settings, caplog: pytest.LogCaptureFixture, stopping: bool) -> None:
    """The workers can die of the terminal's Ctrl-C before joblib hears their interrupt: the job then
    raises BrokenProcessPool. With the stop that follows it is an interrupted run, not a failure
    (the clean-clone `make run` check, session 6: "train: failed ... BrokenProcessPool", state failed);
    without one a worker really died, and it is a failure, retried."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    scheduler = JobScheduler(settings, fast(backoff_s=30))
    stopper: list[threading.Thread] = []

    def broken() -> None:
        if stopping:
            stopper.append(threading.Thread(target=scheduler.shutdown, kwargs={"wait_s": 10}))
            stopper[0].start()
        raise TerminatedWorkerError("A worker process managed by the executor was unexpectedly terminated")

    scheduler.add(Job("train", broken, None, run_at_start=lambda: True))
    outcome = "interrupted" if stopping else "failed"
    with caplog.at_level(logging.INFO):
        scheduler.start()
        try:
            wait_for(lambda: JobState(settings).job("train").get("last_outcome") == outcome)
            if stopping:
                wait_for(lambda: bool(stopper) and not stopper[0].is_alive())
            else:
                wait_for(lambda: JobState(settings).job("train").get("next_retry") is not None)
        finally:
            scheduler.shutdown(wait_s=5)
    job = JobState(settings).job("train")
    assert job["last_outcome"] == outcome and int(job.get("failures", 0)) == (0 if stopping else 1)
    assert int(job.get("runs", 0)) == (0 if stopping else 1)  # an interrupted run is not counted
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: ")]
    if stopping:
        assert any("runs again at the next start" in m for m in said)
        assert not any("failed" in m for m in said) and job.get("next_retry") is None
    else:
        assert any("failed" in m and "TerminatedWorkerError" in m for m in said)
