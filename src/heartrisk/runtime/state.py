"""The job record, ``<home>/jobs.json``: each job's last run and the `up` process, shared by every process.

It is what ``heartrisk status`` shows, what retries count, and how a run missed while the system was
down is found and run once at the next start. Each change is a read-modify-write under a small file
lock that lands atomically (:func:`heartrisk.files.atomic_write`), so a reader sees the old record or
the new one, never half of one, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from filelock import FileLock

from heartrisk.clock import as_utc
from heartrisk.config import Settings
from heartrisk.files import atomic_write

log = logging.getLogger(__name__)

STATE_FILE = "jobs.json"
STATE_LOCK = "jobs-state.lock"
#: Seconds a state update waits for another process's update (they take milliseconds).
STATE_LOCK_TIMEOUT_S = 30


def iso(moment: datetime | None) -> str | None:
    """A time as the record keeps it: ISO 8601 in UTC."""
    return as_utc(moment).isoformat() if moment else None


def parse_time(text: str | None) -> datetime | None:
    """A time of the record back as a datetime (None stays None)."""
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
        with atomic_write(self.path) as partial:
            partial.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))

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
