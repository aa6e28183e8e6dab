"""A few copies of the same error a minute, not one per request: a client must not fill the disk.

Some requests make the server log, and a client can repeat them as fast as it likes. The attack
helper of session 5 found three: Gradio ending an event stream with an error after the response
had started (a ~7 KB traceback each, 2.2 MB/s from one client), a nested join body (3.5 KB each),
and asyncio's ``socket.accept() out of system resource`` once file descriptors ran out (234 MB in
45 s). The first two are refused before they reach the log now (web/guard/gradio_routes.py); silent
connections are timed out (web/guard/timeouts.py), which makes the third harder but not impossible
(a client opening connections fast enough still holds 15 s of them: a per-client connection limit
belongs in the proxy, docs/running.md). This filter is the floor under all of them and whatever is
found next.

:class:`RepeatLimit` lets ``burst`` warnings or errors of one *site* through per ``window_s`` seconds
and counts the rest; the next record of that site after its window says how many were left out. A
site is where the line was logged and, for an error with a traceback, the type of each exception of
its chain (up to :data:`CHAIN`) and the line that raised it: every unhandled error goes through
one ``log.exception`` call, and an attacker repeating one harmless error must not hide the first
traceback of a real bug. Each app installs its
own on the loggers a request can reach (:data:`LIMITED_LOGGERS`; a filter on a logger sees only the
records made there) while it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Records of one call site let through per window.
BURST = 5
#: The window, seconds.
WINDOW_S = 60.0
#: Sites remembered (the least recently seen is forgotten first).
MAX_SITES = 1_000
#: Loggers a client's request can make write: our middleware's "unhandled error", uvicorn's protocol
#: warnings and "ASGI callable returned without completing response", asyncio's accept errors.
LIMITED_LOGGERS = ("heartrisk.web.guard.security", "uvicorn.error", "asyncio")


@dataclass
class _Site:
    window_start: float
    let_through: int = 1
    left_out: int = 0


#: Exceptions of a chain (an error and what caused it) that tell one site from another.
CHAIN = 4
#: (logger, level, file, line, then per exception of the chain: type, file and line it was raised at)
Site = tuple[object, ...]


class RepeatLimit(logging.Filter):
    """At most ``burst`` records per site per ``window_s`` (see the module docstring)."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._sites: OrderedDict[Site, _Site] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # the server's own notes (started, serving on …)
            return True
        key = site_of(record)
        now = self.clock()
        with self._lock:
            site = self._sites.pop(key, None)  # put back last: the most recently seen
            if site is None or now - site.window_start >= self.window_s:
                self._sites[key] = _Site(now)
                if len(self._sites) > MAX_SITES:
                    self._sites.popitem(last=False)
                if site is not None and site.left_out and isinstance(record.msg, str):
                    record.msg += (f" [{site.left_out} more like this in the {self.window_s:.0f} s before "
                                   "were not logged]")
                return True
            self._sites[key] = site
            if site.let_through < self.burst:
                site.let_through += 1
                return True
            site.left_out += 1
            return False

    def install(self, names: tuple[str, ...] = LIMITED_LOGGERS) -> None:
        for name in names:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def remove(self, names: tuple[str, ...] = LIMITED_LOGGERS) -> None:
        for name in names:
            logging.getLogger(name).removeFilter(self)


def site_of(record: logging.LogRecord) -> Site:
    """Where a record was logged and, with a traceback, what was raised where, causes included:
    Starlette wraps any error raised after a response started in one RuntimeError at one line."""
    raised: list[object] = []
    error = record.exc_info[1] if record.exc_info else None
    for _ in range(CHAIN):
        if error is None:
            break
        trace = error.__traceback__
        while trace is not None and trace.tb_next is not None:
            trace = trace.tb_next
        raised += [type(error).__qualname__, trace.tb_frame.f_code.co_filename if trace else "",
                   trace.tb_lineno if trace else 0]
        error = error.__cause__ or error.__context__
    return (record.name, record.levelno, record.pathname, record.lineno, *raised)
