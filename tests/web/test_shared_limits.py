"""Rate limits and the operator lockout shared by replicas through a real redis-server (Debian's),
against the same middleware kept in memory: two replicas in memory allow twice the limit, with Redis
they allow the limit (issue 15)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from heartrisk.config import ConfigError
from heartrisk.web.guard.security import SecurityMiddleware, SecuritySettings
from heartrisk.web.guard.shared import RedisWindow, redis_client
from support.servers import Child, redis_server

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="needs Debian's redis-server (apt-get install redis-server; CI has it)")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("redis")
    server: Child = redis_server(folder / "redis.log", folder)
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


async def _stored(request_scope: dict, receive: object, send: object) -> None:
    """A stand-in for the app behind the guard: every submission is stored (201), every login fails."""
    status = 401 if request_scope["path"].startswith("/monitor") else 201
    await send({"type": "http.response.start", "status": status, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]


def replica(settings: SecuritySettings) -> httpx.AsyncClient:
    app = SecurityMiddleware(_stored, settings)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)),
                             base_url="http://replica")


async def spread(settings: SecuritySettings, path: str, requests: int, replicas: int = 3,
                 **kwargs: object) -> list[int]:
    """``requests`` POSTs from one client, round-robin over ``replicas`` guards; their statuses."""
    clients = [replica(settings) for _ in range(replicas)]
    try:
        return [(await clients[i % replicas].post(path, **kwargs)).status_code  # type: ignore[arg-type]
                for i in range(requests)]
    finally:
        for client in clients:
            await client.aclose()


def test_in_memory_each_replica_counts_alone() -> None:
    settings = SecuritySettings(submission_limit=4)
    statuses = asyncio.run(spread(settings, "/api/v1/submissions", 15))
    assert statuses.count(201) == 12  # 3 replicas x 4: the finding of issue 15


def test_with_redis_the_replicas_share_the_submission_limit(redis_url: str) -> None:
    settings = SecuritySettings(submission_limit=4, redis_url=redis_url)
    redis_client(redis_url).flushdb()
    statuses = asyncio.run(spread(settings, "/api/v1/submissions", 15))
    assert statuses.count(201) == 4 and statuses.count(429) == 11


def test_with_redis_the_lockout_holds_on_every_replica(redis_url: str) -> None:
    settings = SecuritySettings(login_failure_limit=3, redis_url=redis_url)
    redis_client(redis_url).flushdb()
    auth = {"headers": {"authorization": "Basic YWRtaW46d3Jvbmc="}}  # admin:wrong
    statuses = asyncio.run(spread(settings, "/monitor", 9, **auth))
    assert statuses == [401] * 9
    # After three wrong passwords (one per replica) the next ones are refused unchecked, everywhere.
    client = redis_client(redis_url)
    (key,) = client.keys("heartrisk:limit:login-failures:*")
    assert client.zcard(key) == 3


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
        SecurityMiddleware(_stored, SecuritySettings(redis_url="redis://127.0.0.1:1/0"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://host:port/db"):
        SecuritySettings(redis_url="http://wrong")
