"""Operator sessions and the lockout's failure counts: small interfaces, kept in memory here.

**Sessions are server-side.** A login creates a random session id (256 bits from :mod:`secrets`); the
browser keeps it in an HttpOnly, SameSite=Strict cookie and the server keeps only its SHA-256 with the
moment it expires. A request is the operator's while the store holds that hash and the time is before
its expiry; logging out deletes it. So:

* logout ends the session for good (the same cookie replayed afterwards is refused);
* expiry is the server's: the cookie's ``Max-Age`` only tells the browser when to drop it;
* nobody can mint a session, not even with the password: there is nothing to sign, so no signing key
  to derive, store or leak. (The cookie used to be ``expiry.HMAC(sha256(password), expiry)``: anyone
  who knew the password could make one valid until 2100, and logout could not revoke it.)

Signed tokens were the alternative (no store, replicas agree through a shared key). They were not
chosen because revoking one needs a shared deny-list anyway, and a deny-list fails open: a replica that
misses it accepts a revoked token. With an allow-list a replica that does not know a session refuses
it, which is safe. Several replicas share sessions by sharing the store: with ``HEARTRISK_REDIS_URL``
:class:`~heartrisk.web.guard.shared.RedisSessionStore` keeps ``SET <hash> 1 EX <ttl>``, and
:class:`SessionStore` is the whole interface it implements.

The lockout counts wrong passwords per source in a sliding window (:class:`FailureLog`): the in-memory
:class:`~heartrisk.web.guard.rate_limits.SlidingWindow`, or the Redis window of web/guard/shared.py
that every replica shares.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Protocol

#: Sessions one process keeps at most; the oldest is dropped beyond (each needs a correct password).
MAX_SESSIONS = 1_000


class SessionStore(Protocol):
    """Where operator sessions live. Tokens are opaque strings; stores keep only a hash of each."""

    def create(self, ttl_s: float) -> str:
        """A new session valid for ``ttl_s`` seconds; returns its token (the cookie's value)."""

    def valid(self, token: str) -> bool:
        """Whether ``token`` names a live session (unknown, revoked or expired: False)."""

    def revoke(self, token: str) -> None:
        """End the session ``token`` names (nothing if there is none)."""


class FailureLog(Protocol):
    """Wrong passwords per source (an opaque key) in a sliding window."""

    def retry_after(self, key: bytes) -> float:
        """0 when ``key`` may try a password now; else the seconds until it may."""

    def record(self, key: bytes) -> None:
        """Count one wrong password from ``key``."""

    def clear(self, key: bytes) -> None:
        """Forget ``key``'s failures (it just proved it knows the password)."""


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class MemorySessionStore:
    """:class:`SessionStore` in this process's memory (lost on restart: everyone logs in again)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._max = max_sessions
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def create(self, ttl_s: float) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._prune(now)
            if len(self._expiry) >= self._max:
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[token_hash(token)] = now + ttl_s
        return token

    def valid(self, token: str) -> bool:
        if not token:
            return False
        expires = self._expiry.get(token_hash(token))
        return expires is not None and self._clock() < expires

    def revoke(self, token: str) -> None:
        with self._lock:
            self._expiry.pop(token_hash(token), None)

    def _prune(self, now: float) -> None:
        for key in [k for k, expires in self._expiry.items() if expires <= now]:
            del self._expiry[key]

    def __len__(self) -> int:
        return len(self._expiry)
