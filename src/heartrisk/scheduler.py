"""The in-process scheduler of `heartrisk up`, and the job lock every way of running a job shares.

The daily feature pipeline, batch inference and the weekly retrain are plain functions that are also
CLI commands, so cron, Kubernetes or Airflow can run them instead (docs/running.md). Here they run in
one APScheduler ``BackgroundScheduler`` with a single worker thread, so they never overlap inside the
process; :func:`job_lock` (one file lock per home) keeps them from overlapping with a hand-run
``heartrisk daily``/``infer``/``train`` in another process too. The OS releases the lock when its
holder dies, even by ``kill -9``, so a crash never leaves a lock that blocks the next start.

Each run is recorded in ``<home>/jobs.json`` (replaced atomically): when it started and ended, how it
ended, its error. That record is what ``heartrisk status`` shows, what retries count, and how a run
missed while the system was down is found and run once at the next start.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import (
    EVENT_JOB_ADDED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_REMOVED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tzlocal import get_localzone

from heartrisk.config import Settings, settings_from_env

log = logging.getLogger("heartrisk.scheduler")

STATE_FILE = "jobs.json"
JOBS_LOCK = "jobs.lock"
STATE_LOCK = "jobs-state.lock"
#: Seconds a state update waits for another process's update (they take milliseconds).
STATE_LOCK_TIMEOUT_S = 30
OFF = ("off", "never", "none", "")

#: Environment variables of the schedule settings (docs/running.md lists the same).
SCHEDULE_ENV_VARS: dict[str, str] = {
    "daily": "HEARTRISK_DAILY_SCHEDULE",
    "infer": "HEARTRISK_INFER_SCHEDULE",
    "retrain": "HEARTRISK_RETRAIN_SCHEDULE",
    "retries": "HEARTRISK_JOB_RETRIES",
    "backoff_s": "HEARTRISK_JOB_BACKOFF",
    "timezone": "HEARTRISK_TIMEZONE",
}


class JobBusyError(RuntimeError):
    """Another job holds the home's job lock and the caller would not wait (longer)."""


# ---------------------------------------------------------------------------------------------- schedules
_EVERY = re.compile(r"^every\s+(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?$", re.IGNORECASE)
_UNIT_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Schedule:
    """When a job runs: ``"every 30s"`` (also ``m``, ``h``, ``d``), a crontab line such as
    ``"0 2 * * *"`` (minute hour day month weekday, weekday 0 or 7 = Sunday as in cron), or ``off``."""

    text: str
    interval_s: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        spec = " ".join(text.strip().split())
        if spec.lower() in OFF:
            return cls(text="off")
        if match := _EVERY.match(spec):
            seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
            if seconds <= 0:
                raise ValueError(f"{text!r}: the interval must be more than 0 seconds")
            return cls(text=spec, interval_s=seconds)
        fields = spec.split(" ")
        if len(fields) != 5:
            raise ValueError(f"{text!r}: expected 'every 30s|5m|2h|1d', a crontab line of 5 fields "
                             "such as '0 2 * * *', or 'off'")
        # APScheduler 3 counts weekdays from Monday = 0; cron from Sunday = 0 (and 7). Use names.
        fields[4] = re.sub(r"(?<![/\d])\d+",
                           lambda m: _CRON_DAYS[int(m.group()) % 7] if int(m.group()) <= 7 else m.group(),
                           fields[4])
        cron = " ".join(fields)
        try:
            CronTrigger.from_crontab(cron, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        return cls(text=spec, cron=cron)

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None or self.cron is not None

    def trigger(self, tz: tzinfo) -> BaseTrigger | None:
        """The APScheduler trigger; intervals count from now, cron lines follow the clock."""
        if self.interval_s is not None:
            return IntervalTrigger(seconds=self.interval_s, timezone=tz)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=tz)
        return None

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The first time this schedule fires strictly after ``moment``."""
        if self.interval_s is not None:
            return moment + timedelta(seconds=self.interval_s)
        if self.cron is not None:
            trigger = CronTrigger.from_crontab(self.cron, timezone=tz)
            return trigger.get_next_fire_time(None, moment.astimezone(tz) + timedelta(microseconds=1))
        return None


class ScheduleSettings(BaseModel):
    """When the jobs of `heartrisk up` run and how failures are retried. ``extra="forbid"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily: str = Field(default="0 2 * * *", description="feature pipeline (default 02:00 every day)")
    infer: str = Field(default="30 2 * * *", description="batch inference (default 02:30 every day)")
    retrain: str = Field(default="0 4 * * sun",
                         description="retrain through the champion gate (default Sunday 04:00)")
    retries: int = Field(default=3, ge=0, description="retries of a failed run before the next regular one")
    backoff_s: float = Field(default=60.0, gt=0,
                             description="seconds before the first retry; doubles with each retry")
    timezone: str | None = Field(default=None, description="time zone of the cron lines (default: local)")

    @field_validator("daily", "infer", "retrain")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return Schedule.parse(value).text

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone name such as 'UTC' or "
                                 "'Europe/Paris'") from None
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ScheduleSettings:
        """Schedule settings from ``HEARTRISK_*`` variables, CLI options as overrides."""
        return settings_from_env(cls, SCHEDULE_ENV_VARS, "schedule", env, overrides)

    def schedule(self, job: str) -> Schedule:
        return Schedule.parse(getattr(self, job))

    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone) if self.timezone else get_localzone()


# ---------------------------------------------------------------------------------------------- state
def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobState:
    """``<home>/jobs.json``: each job's last run and the `up` process, shared by every process.

    Updates are read-modify-write under a small file lock and land with ``os.replace``, so a reader
    (``heartrisk status``) sees the old file or the new one, never half of one, even after ``kill -9``.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.home / STATE_FILE
        self.locks_dir = settings.locks_dir

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; starting a fresh job record", self.path)
            data = {}
        data.setdefault("jobs", {})
        return data

    def job(self, name: str) -> dict[str, Any]:
        return dict(self.read()["jobs"].get(name, {}))

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job's record, by name ({} before any job ran)."""
        return self.read()["jobs"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks_dir / STATE_LOCK), timeout=STATE_LOCK_TIMEOUT_S):
            yield

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to the state and write it back atomically; returns the new state."""
        with self._locked():
            data = self.read()
            change(data)
            self._write(data)
        return data

    def update_job(self, name: str, **values: Any) -> None:
        self.update(lambda data: data["jobs"].setdefault(name, {}).update(values))

    def update_up(self, **values: Any) -> None:
        self.update(lambda data: data.setdefault("up", {}).update(values))

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".jobs-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=2, sort_keys=True, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def mark_interrupted(self) -> list[str]:
        """Runs recorded as running whose process is gone (killed, machine off): mark them
        interrupted so status says so and the next start runs them again."""
        found: list[str] = []

        def change(data: dict[str, Any]) -> None:
            for name, job in data["jobs"].items():
                if job.get("last_outcome") == "running" and not pid_alive(job.get("pid")):
                    job["last_outcome"] = "interrupted"
                    job["last_error"] = f"the process (pid {job.get('pid')}) stopped during the run"
                    job["last_end"] = None
                    found.append(name)

        self.update(change)
        return found


# ---------------------------------------------------------------------------------------------- job lock
@dataclass
class JobRun:
    """Handed to the body of :func:`job_lock`: set ``summary`` to say what the run did."""

    name: str
    trigger: str
    started: datetime
    summary: str | None = None


def _holder(state: JobState) -> str:
    running = [(name, job) for name, job in state.read()["jobs"].items()
               if job.get("last_outcome") == "running" and pid_alive(job.get("pid"))]
    if not running:
        return "another job"
    name, job = running[0]
    return f"job '{name}' (pid {job.get('pid')}, started {str(job.get('last_start'))[:19]})"


@contextlib.contextmanager
def job_lock(
    settings: Settings,
    name: str,
    *,
    trigger: str = "manual",
    wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[JobRun]:
    """Run job ``name`` alone: hold the home's job lock and record the run in ``jobs.json``.

    One lock for all jobs (not one per job): on two cores a retrain next to a synthesizer fit only
    slows both, and a feature pipeline next to inference would score a table that is moving.
    ``wait`` is how many seconds to wait for the holder (``None``: as long as it takes); ``on_wait``
    gets one message naming the holder when the lock is busy. The body's exception is recorded as
    the run's error and re-raised.
    """
    settings.ensure_home()
    state = JobState(settings)
    lock = FileLock(str(settings.locks_dir / JOBS_LOCK), timeout=-1)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        message = f"{name}: waiting for {_holder(state)} to finish"
        if on_wait is not None:
            on_wait(message)
        try:
            lock.acquire(timeout=-1 if wait is None else wait)
        except Timeout:
            raise JobBusyError(f"cannot run {name}: {_holder(state)} still holds the job lock "
                               f"after {wait:g} s") from None
    try:
        run = JobRun(name=name, trigger=trigger, started=_now())
        # The previous error stays visible while a retry runs; success clears it.
        state.update_job(name, last_start=_iso(run.started), last_end=None, last_outcome="running",
                         last_trigger=trigger, pid=os.getpid())
        try:
            yield run
        except BaseException as exc:
            state.update(functools.partial(_record_end, run=run, exc=exc))
            raise
        state.update(functools.partial(_record_end, run=run, exc=None))
    finally:
        lock.release()


def _record_end(data: dict[str, Any], run: JobRun, exc: BaseException | None) -> None:
    """Write how a run ended into the state: ok, failed (counted for retries) or interrupted."""
    ended = _now()
    job = data["jobs"].setdefault(run.name, {})
    job.update(last_end=_iso(ended), duration_s=round((ended - run.started).total_seconds(), 3))
    if exc is None:
        job.update(last_outcome="ok", last_error=None, last_summary=run.summary,
                   last_success=_iso(ended), failures=0, runs=int(job.get("runs", 0)) + 1,
                   next_retry=None)
    elif isinstance(exc, KeyboardInterrupt | SystemExit):
        job.update(last_outcome="interrupted", last_error="stopped before the end of the run")
    else:
        job.update(last_outcome="failed", last_error=_error_text(exc),
                   failures=int(job.get("failures", 0)) + 1, runs=int(job.get("runs", 0)) + 1)


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------- scheduler
@dataclass
class Job:
    """A job the scheduler runs: a function returning a one-line summary (or None).

    ``schedule`` None means the job only runs when :attr:`run_at_start` says so (the synthesizer
    fit when no synthesizer exists). ``run_at_start`` is asked once, at start, in addition to the
    missed-run rule. ``finished_since(moment)`` says whether a run of the job that started at or
    after ``moment`` completed: a process killed after the job's own work committed but before the
    state file said so must not run the job again (the daily job would add a second batch of
    synthetic rows).
    """

    name: str
    func: Callable[[], str | None]
    schedule: Schedule | None = None
    run_at_start: Callable[[], bool] | None = None
    description: str = ""
    finished_since: Callable[[datetime], bool] | None = None


@dataclass
class JobScheduler:
    """One BackgroundScheduler with one worker thread: jobs queue, they never run side by side."""

    settings: Settings
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    jobs: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tz = self.schedule.tz()
        self.state = JobState(self.settings)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=self.tz,
        )
        self._current: tuple[str, datetime] | None = None
        self._guard = threading.Lock()
        self._stopping = threading.Event()

    # -- set-up
    def add(self, job: Job) -> None:
        self.jobs[job.name] = job

    def start(self) -> list[str]:
        """Start the clock; queue once each job whose run was missed or that asks to run at start.

        Returns the names queued at start, in the order they will run.
        """
        self.state.mark_interrupted()
        now = _now()
        at_start: list[tuple[str, str]] = []
        for name, job in self.jobs.items():
            record = self.state.job(name)
            reason = self._start_reason(job, record, now)
            if reason:
                at_start.append((name, reason))
            self.state.update_job(name, schedule=job.schedule.text if job.schedule else "at start",
                                  registered=record.get("registered") or _iso(now),
                                  description=job.description)
            trigger = job.schedule.trigger(self.tz) if job.schedule else None
            if trigger is not None:
                self.scheduler.add_job(self._execute, trigger, args=[name, "schedule"], id=name,
                                       name=name, replace_existing=True)
        for i, (name, reason) in enumerate(at_start):
            # Date jobs due at the same instant run in id order; a few ms apart they run in ours.
            self.scheduler.add_job(self._execute, DateTrigger(now + timedelta(milliseconds=20 * i)),
                                   args=[name, reason], id=f"{name}.start", name=f"{name} ({reason})")
        # Events are dispatched after APScheduler moved the job's next run time on.
        self.scheduler.add_listener(
            lambda _event: self.publish_next_runs(),
            EVENT_JOB_ADDED | EVENT_JOB_REMOVED | EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        for name, reason in at_start:
            log.info("%s: queued to run now (%s)", name, reason)
        self.scheduler.start()
        self.publish_next_runs()
        return [name for name, _ in at_start]

    def _start_reason(self, job: Job, record: dict[str, Any], now: datetime) -> str | None:
        if record.get("last_outcome") == "interrupted":
            if not self._finished_anyway(job, record):
                return "interrupted"
            record = self.state.job(job.name)
        if job.schedule is not None and job.schedule.enabled:
            reference = _parse(record.get("last_start")) or _parse(record.get("registered"))
            due = job.schedule.next_after(reference, self.tz) if reference else None
            if due is not None and due <= now:
                return "missed"
        if job.run_at_start is not None:
            try:
                wanted = job.run_at_start()
            except Exception as exc:  # cannot tell: run it, and let the run show what is wrong
                log.warning("%s: could not tell whether it should run at start (%s); running it",
                            job.name, _error_text(exc))
                return "start"
            if wanted:
                return "start"
        return None

    def _finished_anyway(self, job: Job, record: dict[str, Any]) -> bool:
        """Whether the interrupted run had in fact completed its work (then it is recorded as ok)."""
        started = _parse(record.get("last_start"))
        if job.finished_since is None or started is None:
            return False
        try:
            finished = job.finished_since(started)
        except Exception as exc:  # cannot tell: run it again; the job itself must stay idempotent
            log.warning("%s: could not tell whether the interrupted run finished (%s); running it again",
                        job.name, _error_text(exc))
            return False
        if finished:
            log.info("%s: the run cut short last time had finished its work; not running it again",
                     job.name)
            self.state.update_job(job.name, last_outcome="ok", last_error=None,
                                  last_summary="finished before the process stopped")
        return finished

    # -- running
    def run_now(self, name: str, reason: str = "manual") -> None:
        """Queue one run of ``name`` now (it waits for the job that is running, if any)."""
        self.scheduler.add_job(self._execute, DateTrigger(_now()), args=[name, reason],
                               id=f"{name}.now", replace_existing=True)

    def _execute(self, name: str, trigger: str, attempt: int = 0) -> None:
        """One run of a job: under the job lock, recorded, a failure logged and retried later."""
        if self._stopping.is_set():  # queued before a stop: dropped, it runs again at the next start
            return
        job = self.jobs[name]
        started = time.monotonic()
        log.info("%s: started (%s)", name, trigger if not attempt else f"retry {attempt}")
        try:
            with self._running(name), job_lock(self.settings, name, trigger=trigger,
                                                on_wait=log.info) as run:
                run.summary = job.func()
        except Exception as exc:
            log.error("%s: failed after %.1f s: %s", name, time.monotonic() - started,
                      _error_text(exc), exc_info=log.isEnabledFor(logging.DEBUG))
            self._retry_later(name, attempt + 1)
        else:
            log.info("%s: done in %.1f s%s", name, time.monotonic() - started,
                     f": {run.summary}" if run.summary else "")
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"{name}.retry")
        finally:
            self.publish_next_runs()

    @contextlib.contextmanager
    def _running(self, name: str) -> Iterator[None]:
        with self._guard:
            self._current = (name, _now())
        try:
            yield
        finally:
            with self._guard:
                self._current = None

    def current(self) -> tuple[str, datetime] | None:
        """The job running in this process, and since when (None when idle)."""
        with self._guard:
            return self._current

    def _retry_later(self, name: str, attempt: int) -> None:
        if attempt > self.schedule.retries:
            log.error("%s: giving up after %d retries; it runs again at its next scheduled time",
                      name, self.schedule.retries)
            self.state.update_job(name, next_retry=None)
            return
        delay = self.schedule.backoff_s * 2 ** (attempt - 1)
        when = _now() + timedelta(seconds=delay)
        log.warning("%s: retry %d of %d in %s", name, attempt, self.schedule.retries, _seconds(delay))
        self.state.update_job(name, next_retry=_iso(when))
        if self.scheduler.running:
            self.scheduler.add_job(self._execute, DateTrigger(when), args=[name, "retry", attempt],
                                   id=f"{name}.retry", replace_existing=True)

    # -- reporting and stopping
    def next_runs(self) -> dict[str, datetime | None]:
        runs: dict[str, datetime | None] = dict.fromkeys(self.jobs)
        for aps_job in self.scheduler.get_jobs():
            name = aps_job.id.split(".")[0]
            when = aps_job.next_run_time
            if name in runs and when is not None and (runs[name] is None or when < runs[name]):
                runs[name] = when
        return runs

    def publish_next_runs(self) -> None:
        """Write each job's next run time to ``jobs.json`` for `heartrisk status`."""
        if not self.scheduler.running:
            return
        runs = self.next_runs()

        def change(data: dict[str, Any]) -> None:
            for name, when in runs.items():
                data["jobs"].setdefault(name, {})["next_run"] = _iso(when)

        try:
            self.state.update(change)
        except Exception as exc:  # a status detail must never stop a job
            log.warning("could not record next run times: %s", exc)

    def shutdown(self, wait_s: float | None = None) -> str | None:
        """Stop the clock and drop queued runs; give the running job ``wait_s`` seconds to finish
        (``None``: as long as it takes). Returns the name of a job still running, if any."""
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while (current := self.current()) is not None:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.1)

        def change(data: dict[str, Any]) -> None:
            for name in self.jobs:
                data["jobs"].setdefault(name, {}).update(next_run=None, next_retry=None)

        self.state.update(change)
        return current[0] if current else None


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:g} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------- status
def schedule_status(settings: Settings) -> dict[str, Any]:
    """The `schedule` section of `heartrisk status`: the `up` process, each job's last and next run."""
    data = JobState(settings).read()
    up = dict(data.get("up", {}))
    alive = bool(up) and up.get("stopped_at") is None and pid_alive(up.get("pid"))
    report: dict[str, Any] = {"up": {"running": alive, **{k: v for k, v in up.items() if v is not None}}}
    if not up:
        report["up"] = {"running": False, "note": "`heartrisk up` has not run on this home"}
    jobs: dict[str, Any] = {}
    for name, job in sorted(data["jobs"].items()):
        outcome = job.get("last_outcome")
        if outcome == "running" and not pid_alive(job.get("pid")):
            outcome = "interrupted"
        entry = {
            "schedule": job.get("schedule"),
            "next_run": job.get("next_run") if alive else None,
            "last_outcome": outcome or "never run",
            "last_start": job.get("last_start"),
            "last_end": job.get("last_end"),
            "duration_s": job.get("duration_s"),
            "last_trigger": job.get("last_trigger"),
            "last_summary": job.get("last_summary"),
            "last_error": job.get("last_error"),
            "last_success": job.get("last_success"),
            "failures_in_a_row": job.get("failures", 0),
            "next_retry": job.get("next_retry") if alive else None,
            "runs": job.get("runs", 0),
        }
        jobs[name] = {k: v for k, v in entry.items() if v is not None}
    report["jobs"] = jobs
    return report


def lock_path(settings: Settings) -> Path:
    return settings.locks_dir / JOBS_LOCK


def schedule_table(section: dict[str, Any]) -> list[Any]:
    """The `schedule` section for people: a line about `up`, then one row per job."""
    from rich.table import Table
    from rich.text import Text

    up = section.get("up", {})
    if up.get("running"):
        rest = f"pid {up.get('pid')}: {up.get('phase', '')}"
        if up.get("urls"):
            rest += f" · {up['urls'].get('form')}"
    else:
        rest = "is not running" + (f" (stopped {_local(up['stopped_at'])})" if up.get("stopped_at") else "")
    head = Text.assemble(("heartrisk up", "bold"), " ", rest)  # Text: job messages are never markup
    table = Table("job", "schedule", "next run", "last run", "outcome", "took", "summary or error",
                  title="jobs")
    colours = {"ok": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for name, job in section.get("jobs", {}).items():
        outcome = job.get("last_outcome", "")
        shown = Text(outcome, style=colours.get(outcome, ""))
        if job.get("failures_in_a_row"):
            shown.append(f" ({job['failures_in_a_row']} in a row)")
        next_run = f"retry {_local(job['next_retry'])}" if job.get("next_retry") else _local(
            job.get("next_run"))
        table.add_row(name, job.get("schedule", ""), next_run, _local(job.get("last_start")), shown,
                      f"{job['duration_s']:.1f} s" if job.get("duration_s") is not None else "",
                      Text(job.get("last_error") or job.get("last_summary") or ""))
    return [head, table]


def _local(text: str | None) -> str:
    """An ISO time from the state file as local wall-clock time, for people."""
    moment = _parse(text)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""
