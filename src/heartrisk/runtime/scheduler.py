"""The in-process scheduler of `heartrisk up`: the jobs run on their schedules, one at a time.

The daily feature pipeline, batch inference and the weekly retrain are plain functions that are also
CLI commands, so cron, Kubernetes or Airflow can run them instead (docs/running.md). Here they run in
one APScheduler ``BackgroundScheduler`` with a single worker thread, so they never overlap inside the
process; the job lock (:mod:`heartrisk.runtime.lock`) keeps them from overlapping with a hand-run
``heartrisk daily``/``infer``/``train`` in another process too. A failed run is retried with backoff;
a run missed while the system was down, or cut short, runs once at the next start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ADDED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_REMOVED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.runtime.lock import LeaseBusyError, error_text, job_lock
from heartrisk.runtime.schedule import Schedule, ScheduleSettings
from heartrisk.runtime.state import JobState, iso, parse_time

#: Seconds an interrupted job waits for the stop that a terminal's Ctrl-C brings with it.
INTERRUPT_WAIT_S = 5.0
log = logging.getLogger(__name__)


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


def _not_failed(data: dict[str, Any], name: str) -> None:
    """Record as interrupted a run the job lock recorded as failed (undo its failure and run counts)."""
    job = data["jobs"].setdefault(name, {})
    job.update(last_outcome="interrupted", last_error="stopped before the end of the run",
               failures=max(0, int(job.get("failures", 1)) - 1), runs=max(0, int(job.get("runs", 1)) - 1))


@dataclass
class JobScheduler:
    """One BackgroundScheduler with one worker thread: jobs queue, they never run side by side."""

    settings: Settings
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    jobs: dict[str, Job] = field(default_factory=dict)
    #: Called with (job name, retries, error) when a job failed its run and every retry (alerts).
    on_gave_up: Callable[[str, int, str], None] | None = None

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
        now = utc_now()
        at_start: list[tuple[str, str]] = []
        for name, job in self.jobs.items():
            record = self.state.job(name)
            reason = self._start_reason(job, record, now)
            if reason:
                at_start.append((name, reason))
            self.state.update_job(name, schedule=job.schedule.text if job.schedule else "at start",
                                  registered=record.get("registered") or iso(now),
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
            reference = parse_time(record.get("last_start")) or parse_time(record.get("registered"))
            due = job.schedule.next_after(reference, self.tz) if reference else None
            if due is not None and due <= now:
                return "missed"
        if job.run_at_start is not None:
            try:
                wanted = job.run_at_start()
            except Exception as exc:  # cannot tell: run it, and let the run show what is wrong
                log.warning("%s: could not tell whether it should run at start (%s); running it",
                            job.name, error_text(exc))
                return "start"
            if wanted:
                return "start"
        return None

    def _finished_anyway(self, job: Job, record: dict[str, Any]) -> bool:
        """Whether the interrupted run had in fact completed its work (then it is recorded as ok)."""
        started = parse_time(record.get("last_start"))
        if job.finished_since is None or started is None:
            return False
        try:
            finished = job.finished_since(started)
        except Exception as exc:  # cannot tell: run it again; the job itself must stay idempotent
            log.warning("%s: could not tell whether the interrupted run finished (%s); running it again",
                        job.name, error_text(exc))
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
        self.scheduler.add_job(self._execute, DateTrigger(utc_now()), args=[name, reason],
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
        except LeaseBusyError as exc:  # another machine runs this job now: its run counts, no retry
            log.info("%s: not run here: %s", name, exc)
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches the job's worker processes too (one process group), and
            # joblib raises theirs here. The main thread does the stopping; the job lock has recorded
            # the run as interrupted, which the next start runs again. No traceback. If no stop
            # follows (someone signalled the workers alone), it is retried like a failure.
            self._interrupted(name, attempt, time.monotonic() - started)
        except BrokenProcessPool as exc:
            # The same Ctrl-C, when the workers die of it before joblib hears their interrupt: the
            # pool is reported broken. Followed by a stop, it was the interrupt (the lock recorded a
            # failure: put right); otherwise a worker really died, and it is a failure.
            if self._stopping.wait(INTERRUPT_WAIT_S):
                self.state.update(functools.partial(_not_failed, name=name))
                self._interrupted(name, attempt, time.monotonic() - started)
            else:
                self._failed(name, attempt, started, exc)
        except Exception as exc:
            self._failed(name, attempt, started, exc)
        else:
            log.info("%s: done in %.1f s%s", name, time.monotonic() - started,
                     f": {run.summary}" if run.summary else "")
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"{name}.retry")
        finally:
            self.publish_next_runs()

    def _interrupted(self, name: str, attempt: int, seconds: float) -> None:
        """One line for a run its worker processes' interrupt ended; retried unless a stop follows."""
        if self._stopping.wait(INTERRUPT_WAIT_S):
            log.warning("%s: interrupted after %.1f s (Ctrl-C reached its worker processes); it runs "
                        "again at the next start", name, seconds)
        else:
            log.warning("%s: its worker processes were interrupted after %.1f s; retrying later",
                        name, seconds)
            self._retry_later(name, attempt + 1, "interrupted")

    def _failed(self, name: str, attempt: int, started: float, exc: BaseException) -> None:
        log.error("%s: failed after %.1f s: %s", name, time.monotonic() - started,
                  error_text(exc), exc_info=log.isEnabledFor(logging.DEBUG))
        self._retry_later(name, attempt + 1, error_text(exc))

    @contextlib.contextmanager
    def _running(self, name: str) -> Iterator[None]:
        with self._guard:
            self._current = (name, utc_now())
        try:
            yield
        finally:
            with self._guard:
                self._current = None

    def current(self) -> tuple[str, datetime] | None:
        """The job running in this process, and since when (None when idle)."""
        with self._guard:
            return self._current

    def _retry_later(self, name: str, attempt: int, error: str = "") -> None:
        if attempt > self.schedule.retries:
            log.error("%s: giving up after %d retries; it runs again at its next scheduled time",
                      name, self.schedule.retries)
            self.state.update_job(name, next_retry=None)
            if self.on_gave_up is not None:
                try:
                    self.on_gave_up(name, self.schedule.retries, error)
                except Exception as exc:  # an alert that cannot be sent must not stop the scheduler
                    log.error("%s: could not send the alert: %s", name, error_text(exc))
            return
        delay = self.schedule.backoff_s * 2 ** (attempt - 1)
        when = utc_now() + timedelta(seconds=delay)
        log.warning("%s: retry %d of %d in %s", name, attempt, self.schedule.retries, _seconds(delay))
        self.state.update_job(name, next_retry=iso(when))
        if self.scheduler.running:
            self.scheduler.add_job(self._execute, DateTrigger(when), args=[name, "retry", attempt],
                                   id=f"{name}.retry", replace_existing=True)

    # -- reporting and stopping
    def next_runs(self, scheduled_only: bool = False) -> dict[str, datetime | None]:
        """Each job's next run: the soonest of its schedule and any run queued now or as a retry, or
        with ``scheduled_only`` its schedule's alone (a queued run may already have been handed to a
        worker and left the list, so `up`'s start-up lines would change from run to run)."""
        runs: dict[str, datetime | None] = dict.fromkeys(self.jobs)
        for aps_job in self.scheduler.get_jobs():
            name = aps_job.id.split(".")[0]
            if scheduled_only and aps_job.id != name:
                continue
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
                data["jobs"].setdefault(name, {})["next_run"] = iso(when)

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
