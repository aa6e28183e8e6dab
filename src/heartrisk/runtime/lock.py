"""The job lock every way of running a job shares, and the record of each run.

One lock per home for all jobs (not one per job): on two cores a retrain next to a synthesizer fit only
slows both, and a feature pipeline next to inference would score a table that is moving. The CLI
commands, `heartrisk up`'s scheduler and `heartrisk daily` run from cron all take it, so they never
overlap. The OS releases the lock when its holder dies, even by ``kill -9``, so a crash never leaves a
lock that blocks the next start. Each run is recorded in ``jobs.json`` (:mod:`heartrisk.runtime.state`).

A file lock holds on one machine only. With the store shared by several machines each run also holds
the job's lease in the store (:mod:`heartrisk.store.lease`: ``job-daily``, ``job-infer``, …), renewed
while it runs and expiring ``HEARTRISK_LEASE_TTL`` seconds after a crash. A run whose lease another
machine holds waits ``HEARTRISK_LEASE_WAIT`` seconds (default 0), then stops with a message naming the
holder and its expiry, and nothing is recorded: two cron runs of ``daily`` at 02:00 on two machines
leave the state of one clean run. Different jobs take different leases: on separate machines a
retrain does not slow a feature pipeline. Before the lease, the store is probed for conditional writes
(:mod:`heartrisk.store.probe`): a store that ignores them is refused before anything runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from filelock import FileLock, Timeout

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.runtime.state import JobState, iso, pid_alive
from heartrisk.store.lease import LeaseBusyError, default_holder, held
from heartrisk.store.objects import open_objects
from heartrisk.store.probe import require_conditional_writes

JOBS_LOCK = "jobs.lock"


class JobBusyError(UserError, RuntimeError):
    """Another job holds the home's job lock and the caller would not wait (longer)."""


__all__ = ["JobBusyError", "LeaseBusyError", "job_lease", "job_lock", "run_job"]


class JobResult(Protocol):
    """What every job returns: at least a one-line summary for the record."""

    @property
    def summary(self) -> str: ...


Result = TypeVar("Result", bound=JobResult)


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
        with job_lease(settings, name, on_wait=on_wait):
            run = JobRun(name=name, trigger=trigger, started=utc_now())
            # The previous error stays visible while a retry runs; success clears it.
            state.update_job(name, last_start=iso(run.started), last_end=None, last_outcome="running",
                             last_trigger=trigger, pid=os.getpid())
            try:
                yield run
            except BaseException as exc:
                state.update(functools.partial(_record_end, run=run, exc=exc))
                raise
            state.update(functools.partial(_record_end, run=run, exc=None))
    finally:
        lock.release()


def job_lease(settings: Settings, name: str,
              on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[Any]:
    """The cross-machine lease of job ``name`` (see the module docstring), after the store's probe."""
    require_conditional_writes(settings.store_root, settings.single_writer)
    return held(open_objects(settings.store_root), f"job-{name}", default_holder(f"job '{name}'"),
                ttl_s=settings.lease_ttl_s, wait_s=settings.lease_wait_s, on_wait=on_wait)


def _record_end(data: dict[str, Any], run: JobRun, exc: BaseException | None) -> None:
    """Write how a run ended into the state: ok, failed (counted for retries) or interrupted."""
    ended = utc_now()
    job = data["jobs"].setdefault(run.name, {})
    job.update(last_end=iso(ended), duration_s=round((ended - run.started).total_seconds(), 3))
    if exc is None:
        job.update(last_outcome="ok", last_error=None, last_summary=run.summary,
                   last_success=iso(ended), failures=0, runs=int(job.get("runs", 0)) + 1,
                   next_retry=None)
    elif isinstance(exc, KeyboardInterrupt | SystemExit):
        job.update(last_outcome="interrupted", last_error="stopped before the end of the run")
    else:
        job.update(last_outcome="failed", last_error=error_text(exc),
                   failures=int(job.get("failures", 0)) + 1, runs=int(job.get("runs", 0)) + 1)


def error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_job(settings: Settings, name: str, job: Callable[[], Result], *, trigger: str = "manual",
            wait: float | None = None, on_wait: Callable[[str], None] | None = None) -> Result:
    """Run ``job`` under the job lock and record its result's ``summary`` (see :func:`job_lock`)."""
    with job_lock(settings, name, trigger=trigger, wait=wait, on_wait=on_wait) as run:
        result = job()
        run.summary = result.summary
    return result


def lock_path(settings: Settings) -> Path:
    return settings.locks_dir / JOBS_LOCK
