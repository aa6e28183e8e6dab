"""The scheduler core with tiny real jobs: schedules, the job lock, no overlap, retries, missed runs.

The jobs here append to files or sleep; the lock is the real file lock under the home's locks folder and
other processes are real subprocesses (one killed with SIGKILL while it holds the lock).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heartrisk.config import ConfigError, Settings
from heartrisk.runtime.lock import JobBusyError, job_lock
from heartrisk.runtime.schedule import Schedule, ScheduleSettings
from heartrisk.runtime.scheduler import Job, JobScheduler
from heartrisk.runtime.state import JobState
from heartrisk.runtime.status import schedule_status

UTC_TZ = "UTC"


def wait_for(condition, timeout: float = 20.0, step: float = 0.05) -> None:
    """Poll until ``condition()`` is true; fail with a clear message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)


def fast(**values: object) -> ScheduleSettings:
    base: dict[str, object] = {"daily": "off", "infer": "off", "retrain": "off", "retries": 2,
                               "backoff_s": 0.3, "timezone": UTC_TZ}
    base.update(values)
    return ScheduleSettings(**base)


# ------------------------------------------------------------------------------------------ schedules
def test_schedules_parse_intervals_cron_and_off() -> None:
    assert Schedule.parse("every 30s").interval_s == 30
    assert Schedule.parse("every 5m").interval_s == 300
    assert Schedule.parse("every 2h").interval_s == 7200
    assert not Schedule.parse("off").enabled
    # cron counts weekdays from Sunday = 0; APScheduler 3 from Monday = 0: the names settle it.
    sunday = Schedule.parse("0 4 * * 0")
    monday_noon = datetime(2024, 1, 1, 12, tzinfo=UTC)  # a Monday
    assert sunday.next_after(monday_noon, UTC) == datetime(2024, 1, 7, 4, tzinfo=UTC)
    assert Schedule.parse("0 4 * * 7").next_after(monday_noon, UTC) == datetime(2024, 1, 7, 4, tzinfo=UTC)
    assert Schedule.parse("0 2 * * *").next_after(monday_noon, UTC) == datetime(2024, 1, 2, 2, tzinfo=UTC)
    assert Schedule.parse("30 2 * * 1-5").next_after(monday_noon, UTC) == datetime(2024, 1, 2, 2, 30,
                                                                                  tzinfo=UTC)


@pytest.mark.parametrize("text", ["every", "every -3s", "0 2 * *", "61 2 * * *", "0 4 * * 9",
                                  "daily at noon"])
def test_bad_schedules_are_refused_with_the_setting_named(text: str) -> None:
    with pytest.raises(ConfigError, match="HEARTRISK_DAILY_SCHEDULE"):
        ScheduleSettings.from_env({"HEARTRISK_DAILY_SCHEDULE": text})


def test_schedule_settings_from_env_and_overrides() -> None:
    env = {"HEARTRISK_INFER_SCHEDULE": "every 10s", "HEARTRISK_JOB_RETRIES": "5"}
    chosen = ScheduleSettings.from_env(env, daily="every 20s")
    assert (chosen.daily, chosen.infer, chosen.retries) == ("every 20s", "every 10s", 5)
    with pytest.raises(ConfigError, match="HEARTRISK_TIMEZONE"):
        ScheduleSettings.from_env({"HEARTRISK_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="HEARTRISK_JOB_BACKOFF"):
        ScheduleSettings.from_env({"HEARTRISK_JOB_BACKOFF": "0"})


# ------------------------------------------------------------------------------------------ job lock
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


HOLD = """
import sys, time
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.runtime.lock import job_lock
with job_lock(Settings(home=Path(sys.argv[1])), "infer", trigger="manual"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(settings: Settings, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.home), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


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


def test_state_file_is_replaced_atomically(settings: Settings) -> None:
    state = JobState(settings)
    state.update_job("daily", last_outcome="ok")
    leftovers = [p for p in settings.home.iterdir() if p.name.startswith(".jobs")]
    assert leftovers == []
    assert os.stat(settings.home / "jobs.json").st_size > 0


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


def test_status_table_shows_each_job_outcome_and_error(settings: Settings) -> None:
    from rich.console import Console

    from heartrisk.cli.render import schedule_table

    with job_lock(settings, "daily") as run:
        run.summary = "100 synthetic rows"
    with pytest.raises(OSError), job_lock(settings, "infer"):
        raise OSError("disk full")
    console = Console(record=True, width=200)
    console.print(*schedule_table(schedule_status(settings)), sep="\n")
    text = console.export_text()
    assert "heartrisk up is not running" in text
    assert "100 synthetic rows" in text and "OSError: disk full" in text
    assert "failed (1 in a row)" in text
