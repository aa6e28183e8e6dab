"""The guard's per-client state, in memory (one server) or in Redis (N replicas): client keys, the
submission budget, the lockout's failure counts and the operator sessions.

The submission budget and the wrong operator passwords are counted per client in sliding windows
(:class:`~heartrisk.web.guard.rate_limits.SlidingWindow`); operator sessions are server-side
(:mod:`heartrisk.web.guard.sessions`). Kept in process memory, N replicas behind a proxy allow N times
as much (a client spreading its requests over the replicas got 120 submissions an hour from each) and
a login on one replica is unknown to the others. With ``HEARTRISK_REDIS_URL`` set, every replica keeps
them in that Redis instead, so the limits, the lockout and the sessions hold for the whole deployment:

* a window is a sorted set per client (``heartrisk:limit:<name>:<client key>``) of event times;
  taking a slot is one Lua script (drop the events older than the window, count, add), so two replicas
  never both take the last slot. Times come from Redis' own clock (``TIME``), the same for every
  replica. Each key expires with its window: nothing is kept longer than the limit needs;
* if Redis cannot be reached, a request is let through and a warning logged (failing open: an
  outage of the limiter does not take the form down);
* the client key is an HMAC of the address with a secret drawn once and kept in Redis
  (``SET NX``), so every replica maps one client to one key and Redis never holds an address.

* a session is a key ``heartrisk:session:<sha256 of the token>`` with the session's lifetime as its
  Redis expiry (``SET … EX``): logout deletes it on every replica at once. If Redis cannot be reached
  a session is refused (failing closed: the operator logs in again once Redis is back).
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any

from heartrisk.config import ConfigError
from heartrisk.web.guard.rate_limits import ClientKeys, RateWindow, SlidingWindow
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.guard.sessions import FailureLog, MemorySessionStore, SessionStore, token_hash

log = logging.getLogger(__name__)

SECRET_KEY = "heartrisk:limit:client-key-secret"

#: KEYS[1] the window; ARGV: window (s), limit, take (1) or only look (0). Returns the seconds to wait
#: (0: allowed, and a slot taken when asked).
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(math.max(0, tonumber(oldest[2]) + window - t))
end
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], t, now[1] .. now[2] .. ':' .. ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
end
return '0'
"""
#: KEYS[1] the window; removes its newest event (a request that stored nothing gives its slot back).
_GIVE_BACK = """
local top = redis.call('ZRANGE', KEYS[1], -1, -1)
if top[1] then redis.call('ZREM', KEYS[1], top[1]) end
"""


class RedisWindow:
    """:class:`~heartrisk.web.guard.rate_limits.RateWindow` and the lockout's
    :class:`~heartrisk.web.guard.sessions.FailureLog` in Redis, shared by every replica that names the
    same Redis and ``name``."""

    def __init__(self, client: Any, name: str, limit: int, window_s: float) -> None:
        self.client = client
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)

    def _key(self, key: bytes) -> str:
        return f"heartrisk:limit:{self.name}:{key.hex()}"

    def _run(self, key: bytes, take: bool) -> float:
        return float(self._guarded(lambda: self._take(
            keys=[self._key(key)], args=[self.window_s, self.limit, int(take), secrets.token_hex(4)]), 0.0))

    def _guarded(self, call: Any, fallback: Any) -> Any:
        """Redis unreachable: let the request through (logged) rather than fail every form submission;
        the limits come back with Redis. An outage is the operator's to see in the log."""
        from redis import RedisError

        try:
            return call()
        except RedisError as exc:
            log.warning("rate limit %s: Redis unreachable (%s); allowing the request",
                        self.name, type(exc).__name__)
            return fallback

    def retry_after(self, key: bytes) -> float:
        return self._run(key, take=False)

    def take(self, key: bytes) -> float:
        return self._run(key, take=True)

    def give_back(self, key: bytes) -> None:
        self._guarded(lambda: self._give_back(keys=[self._key(key)]), None)

    def record(self, key: bytes) -> None:
        """Add an event even past the limit (a wrong password counts whatever the window holds)."""
        self._guarded(lambda: self._take(keys=[self._key(key)],
                                         args=[self.window_s, 2**31, 1, secrets.token_hex(4)]), None)

    def clear(self, key: bytes) -> None:
        """Forget ``key``'s events (the right password ends a run of wrong ones)."""
        self._guarded(lambda: self.client.delete(self._key(key)), None)


class RedisSessionStore:
    """:class:`~heartrisk.web.guard.sessions.SessionStore` in Redis: a session made on one replica is
    valid on all, and logout on one ends it everywhere. Only the token's hash is stored."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @staticmethod
    def _key(token: str) -> str:
        return f"heartrisk:session:{token_hash(token).hex()}"

    def create(self, ttl_s: float) -> str:
        token = secrets.token_urlsafe(32)
        self.client.set(self._key(token), b"1", ex=max(1, math.ceil(ttl_s)))
        return token

    def valid(self, token: str) -> bool:
        from redis import RedisError

        if not token:
            return False
        try:
            return bool(self.client.exists(self._key(token)))
        except RedisError as exc:
            log.warning("operator session: Redis unreachable (%s); refusing the session", type(exc).__name__)
            return False

    def revoke(self, token: str) -> None:
        self.client.delete(self._key(token))


def shared_client_keys(client: Any) -> ClientKeys:
    """Client address -> opaque key, the same on every replica (secret kept in Redis, drawn once)."""
    client.set(SECRET_KEY, secrets.token_hex(32), nx=True)
    return ClientKeys(bytes.fromhex(client.get(SECRET_KEY).decode()))


@dataclass(frozen=True)
class GuardState:
    """Everything the guard keeps per client, from one backend (memory or one Redis)."""

    keys: ClientKeys
    submissions: RateWindow
    failures: FailureLog
    sessions: SessionStore


def guard_state(settings: SecuritySettings) -> GuardState:
    """The guard's state in this process's memory, or in the Redis ``settings.redis_url`` names."""
    if not settings.redis_url:
        return GuardState(ClientKeys(),
                          SlidingWindow(settings.submission_limit, settings.submission_window_s),
                          SlidingWindow(settings.login_failure_limit, settings.login_window_s),
                          MemorySessionStore())
    client = redis_client(settings.redis_url)
    return GuardState(
        shared_client_keys(client),
        RedisWindow(client, "submissions", settings.submission_limit, settings.submission_window_s),
        RedisWindow(client, "login-failures", settings.login_failure_limit, settings.login_window_s),
        RedisSessionStore(client))


def redis_client(url: str) -> Any:
    """A Redis client on ``url``, checked with a PING so a wrong URL fails at start, not per request."""
    try:
        import redis
    except ImportError:
        raise ConfigError("HEARTRISK_REDIS_URL is set but the redis client is not installed: "
                          "pip install 'heartrisk[redis]'") from None
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"HEARTRISK_REDIS_URL: cannot reach {url.split('@')[-1]}: {exc}") from None
    return client
