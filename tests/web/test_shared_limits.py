"""The guard's per-client state shared by replicas through a real redis-server (Debian's), against the
same state kept in memory: replicas in memory each allow the whole limit, with Redis together they
allow it once; the lockout and the operator sessions hold on every replica (issue 15)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heartrisk.config import ConfigError
from heartrisk.web.guard.rate_limits import SubmissionLimit
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.guard.shared import GuardState, RedisWindow, guard_state, redis_client
from support.servers import Child, redis_server

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="needs Debian's redis-server (apt-get install redis-server; CI has it)")

CLIENT = "203.0.113.7"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("redis")
    server: Child = redis_server(folder / "redis.log", folder)
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def replicas(settings: SecuritySettings, n: int = 3) -> list[GuardState]:
    """The state each of ``n`` `serve` processes builds at start (web/app.py does the same)."""
    return [guard_state(settings) for _ in range(n)]


def stored(settings: SecuritySettings, requests: int) -> int:
    """Submissions one client gets stored when it spreads ``requests`` over three replicas."""
    limits = [SubmissionLimit(state.keys, state.submissions) for state in replicas(settings)]
    return sum(1 for i in range(requests) if limits[i % 3].take(CLIENT) == 0)


def test_in_memory_each_replica_counts_alone() -> None:
    assert stored(SecuritySettings(submission_limit=4), 15) == 12  # 3 replicas x 4: issue 15's finding


def test_with_redis_the_replicas_share_the_submission_limit(redis_url: str) -> None:
    redis_client(redis_url).flushdb()
    assert stored(SecuritySettings(submission_limit=4, redis_url=redis_url), 15) == 4


def test_with_redis_the_lockout_holds_on_every_replica(redis_url: str) -> None:
    redis_client(redis_url).flushdb()
    states = replicas(SecuritySettings(login_failure_limit=3, redis_url=redis_url))
    keys = [state.keys.for_address(CLIENT) for state in states]
    assert len(set(keys)) == 1  # one client is one key on every replica (the secret lives in Redis)
    for i in range(3):  # one wrong password on each replica
        assert states[i].failures.retry_after(keys[i]) == 0
        states[i].failures.record(keys[i])
    assert all(state.failures.retry_after(keys[0]) > 0 for state in states)
    states[1].failures.clear(keys[0])  # the right password on one replica ends the run everywhere
    assert all(state.failures.retry_after(keys[0]) == 0 for state in states)


def test_with_redis_a_session_holds_on_every_replica_until_logout_or_expiry(redis_url: str) -> None:
    redis_client(redis_url).flushdb()
    a, b, c = replicas(SecuritySettings(redis_url=redis_url))
    token = a.sessions.create(3600)
    assert b.sessions.valid(token) and c.sessions.valid(token)
    assert not b.sessions.valid(token + "x") and not b.sessions.valid("")
    c.sessions.revoke(token)
    assert not a.sessions.valid(token) and not b.sessions.valid(token)
    short = a.sessions.create(1)
    assert b.sessions.valid(short)
    time.sleep(2.2)
    assert not b.sessions.valid(short)
    assert not any(token.encode() in key for key in redis_client(redis_url).keys("*"))  # only hashes


def test_in_memory_a_session_is_unknown_to_other_replicas() -> None:
    a, b = replicas(SecuritySettings(), 2)
    token = a.sessions.create(3600)
    assert a.sessions.valid(token) and not b.sessions.valid(token)


def test_two_replicas_taking_the_last_slot_at_once_take_it_once(redis_url: str) -> None:
    client = redis_client(redis_url)
    client.flushdb()
    windows = [RedisWindow(redis_client(redis_url), "submissions", 50, 60) for _ in range(2)]

    async def takers() -> list[float]:
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(None, windows[i % 2].take, b"client") for i in range(80)]
        return await asyncio.gather(*jobs)

    waits = asyncio.run(takers())
    assert sum(1 for w in waits if w == 0) == 50 and all(w > 0 for w in waits if w != 0)


def test_an_unreachable_redis_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HEARTRISK_REDIS_URL: cannot reach"):
        guard_state(SecuritySettings(redis_url="redis://127.0.0.1:1/0"))
    with pytest.raises(ValueError, match="redis://host:port/db"):
        SecuritySettings(redis_url="http://wrong")
