"""Who a client is, and its budgets: the per-client state behind the rate limits.

Clients are told apart by their address, held only as a keyed hash (a key drawn at start, or shared
by the replicas through Redis: web/guard/shared.py): the limiter cannot list the addresses it has
seen, and nothing here logs or stores one. Which address is the client's is uvicorn's to say, from
``HEARTRISK_TRUSTED_PROXIES`` (web/server.py). The budgets are counted where the thing they protect
happens (web/guard/security.py lists where), not by URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.types import Scope


class ClientKeys:
    """Client address -> an opaque key (HMAC with a secret): no address is kept. The secret is drawn
    per process, or shared by the replicas through Redis (web/guard/shared.py)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def __call__(self, scope: Scope) -> bytes:
        client = scope.get("client")
        return self.for_address(client[0] if client else "")

    def for_address(self, address: str | None) -> bytes:
        return hmac.new(self._secret, str(address or "").encode(), hashlib.sha256).digest()[:16]


@dataclass
class SlidingWindow:
    """At most ``limit`` events per key in any ``window_s`` seconds (in memory, pruned as it goes).

    Thread-safe: the form's functions run in Gradio's worker threads, the API on the event loop."""

    limit: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _events: dict[bytes, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _recent(self, key: bytes, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def _wait(self, key: bytes, now: float) -> float:
        events = self._recent(key, now)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window_s - now)

    def retry_after(self, key: bytes) -> float:
        """0 when ``key`` may go ahead now; else the seconds until its oldest event leaves the window."""
        with self._lock:
            return self._wait(key, self.clock())

    def take(self, key: bytes) -> float:
        """Reserve a slot for ``key`` if there is one (returns 0), else the seconds to wait."""
        with self._lock:
            now = self.clock()
            wait = self._wait(key, now)
            if wait == 0:
                self._events[key].append(now)
            return wait

    def give_back(self, key: bytes) -> None:
        """Return the newest slot of ``key`` (its request stored nothing)."""
        with self._lock:
            events = self._events.get(key)
            if events:
                events.pop()

    def record(self, key: bytes) -> None:
        with self._lock:
            now = self.clock()
            self._recent(key, now).append(now)

    def clear(self, key: bytes) -> None:
        with self._lock:
            self._events.pop(key, None)

    def prune(self, now: float | None = None) -> None:
        with self._lock:
            self._prune(self.clock() if now is None else now)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window_s]:
            del self._events[key]

    def __len__(self) -> int:
        return len(self._events)


class RateWindow(Protocol):
    """What :class:`SubmissionLimit` needs of its counts: :class:`SlidingWindow` in memory here; a
    shared store (:class:`~heartrisk.web.guard.shared.RedisWindow`) implements the same calls for several
    replicas."""

    def retry_after(self, key: bytes) -> float: ...

    def take(self, key: bytes) -> float: ...

    def give_back(self, key: bytes) -> None: ...


@dataclass
class SubmissionLimit:
    """The submission budget of each client, shared by the API and the form's share event.

    Counted where a row is stored (the API's route, the form's function), whatever URL reached it; a
    slot is given back when nothing was stored, so invalid submissions cost nothing."""

    keys: ClientKeys
    window: RateWindow

    def retry_after(self, scope: Scope) -> float:
        return self.window.retry_after(self.keys(scope))

    def take(self, address: str | None) -> float:
        return self.window.take(self.keys.for_address(address))

    def give_back(self, address: str | None) -> None:
        self.window.give_back(self.keys.for_address(address))


def retry_seconds(wait: float) -> int:
    return max(1, int(wait + 0.999))


def too_many_detail(what: str, wait: float) -> str:
    return f"too many {what} from this client; try again in {retry_seconds(wait)} s"
