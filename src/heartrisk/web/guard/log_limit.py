"""A few copies of the same log line a minute, not one per request: a client must not fill the disk.

Some requests make the server log, and a client can repeat them as fast as it likes. The attack
helper of session 5 found three: Gradio ending an event stream with an error after the response
had started (a ~7 KB traceback each, 2.2 MB/s from one client), a nested join body (3.5 KB each),
and asyncio's ``socket.accept() out of system resource`` once file descriptors ran out (234 MB in
45 s). The first two are refused before they reach the log now (web/guard/gradio_routes.py), the
third cannot happen while silent connections are timed out (web/guard/timeouts.py); this filter is
the floor under whatever is found next.

:class:`RepeatLimit` lets ``burst`` warnings or errors of one call site (logger, level, message
template) through per ``window_s`` seconds and counts the rest; the next record of that site after
its window says how many were left out. Installed on the loggers a request can reach
(:data:`LIMITED_LOGGERS`), since a filter on a logger sees only the records made there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Records of one call site let through per window.
BURST = 5
#: The window, seconds.
WINDOW_S = 60.0
#: Call sites remembered; a logger that formats its own text (every line a new "site") cannot grow
#: the table without end.
MAX_SITES = 1_000
#: Loggers a client's request can make write: our middleware's "unhandled error", uvicorn's protocol
#: warnings and "ASGI callable returned without completing response", asyncio's accept errors.
LIMITED_LOGGERS = ("heartrisk.web.guard.security", "uvicorn.error", "asyncio")


@dataclass
class _Site:
    window_start: float
    let_through: int = 1
    left_out: int = 0


class RepeatLimit(logging.Filter):
    """At most ``burst`` records per call site per ``window_s`` (see the module docstring)."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._sites: dict[tuple[str, int, str], _Site] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # the server's own notes (started, serving on …)
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            site = self._sites.get(key)
            if site is None or now - site.window_start >= self.window_s:
                if len(self._sites) >= MAX_SITES:
                    self._sites.clear()
                self._sites[key] = _Site(now)
                if site is not None and site.left_out and isinstance(record.msg, str):
                    record.msg += (f" [{site.left_out} more like this in the {self.window_s:.0f} s before "
                                   "were not logged]")
                return True
            if site.let_through < self.burst:
                site.let_through += 1
                return True
            site.left_out += 1
            return False


_LIMIT = RepeatLimit()


def limit_repeated_logs(names: tuple[str, ...] = LIMITED_LOGGERS) -> None:
    """Install the shared :class:`RepeatLimit` on the loggers a request can reach (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _LIMIT not in logger.filters:
            logger.addFilter(_LIMIT)
