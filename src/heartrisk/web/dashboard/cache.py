"""The dashboard's snapshot of the monitoring report, kept for a short while per window.

Building the report reads the tables and the registry (:func:`heartrisk.monitoring.snapshot.build_snapshot`),
so the page and its JSON API share one snapshot per (champion, table versions, window) for up to
``cache_seconds``: a page that calls several endpoints reads the tables once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import Field

from heartrisk.config import Settings
from heartrisk.monitoring.check_history import history_path
from heartrisk.monitoring.snapshot import ReportSettings, Snapshot, build_snapshot
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, SERVING_PROFILE, open_group


class DashboardSettings(ReportSettings):
    """Knobs of the dashboard: the report's, and how long a snapshot is reused."""

    cache_seconds: float = Field(60, ge=0)


class SnapshotCache:
    """The latest snapshot per window, rebuilt when a table or the champion moved or it is too old."""

    def __init__(self, settings: Settings, config: DashboardSettings) -> None:
        self.settings = settings
        self.config = config
        self._lock = threading.Lock()
        self._entries: dict[float, tuple[tuple[Any, ...], float, Snapshot]] = {}

    def _state(self) -> tuple[Any, ...]:
        from heartrisk.model.registry import champion_version

        versions = []
        for spec in (HEART, HEART_PREDICTIONS, SERVING_PROFILE):
            group = open_group(self.settings, spec)
            versions.append(group.version() if group.exists() else None)
        history = history_path(self.settings)
        checked = history.stat().st_mtime_ns if history.is_file() else None
        return (champion_version(self.settings), *versions, checked)

    def get(self, hours: float | None = None) -> Snapshot:
        config = self.config if hours is None else self.config.model_copy(update={"hours": hours})
        state = self._state()
        with self._lock:
            entry = self._entries.get(config.hours)
            if entry and entry[0] == state and time.monotonic() - entry[1] < config.cache_seconds:
                return entry[2]
        snap = build_snapshot(self.settings, config)
        with self._lock:
            self._entries[config.hours] = (state, time.monotonic(), snap)
            while len(self._entries) > 8:
                self._entries.pop(next(iter(self._entries)))
        return snap
