"""A client cannot fill the server's disk by repeating a request that makes it log (session 5's
attack helper: ~7 KB of traceback per request, 2.2 MB/s from one client)."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.web.guard.log_limit import BURST, LIMITED_LOGGERS, RepeatLimit
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import copy_home


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def records(limit: RepeatLimit, logger: str, message: str, n: int) -> list[logging.LogRecord]:
    made = [logging.LogRecord(logger, logging.ERROR, __file__, 1, message, ("GET", "/x"), None)
            for _ in range(n)]
    return [r for r in made if limit.filter(r)]


def test_a_call_site_gets_a_burst_a_window_and_then_says_how_many_it_left_out() -> None:
    clock = Clock()
    limit = RepeatLimit(burst=3, window_s=60, clock=clock)
    assert len(records(limit, "a", "unhandled error on %s %s", 100)) == 3
    assert len(records(limit, "a", "another site %s %s", 2)) == 2  # each site has its own budget
    assert len(records(limit, "b", "unhandled error on %s %s", 2)) == 2  # and each logger
    clock.now = 59.9
    assert records(limit, "a", "unhandled error on %s %s", 1) == []
    clock.now = 60.0
    (first, *rest) = records(limit, "a", "unhandled error on %s %s", 10)
    assert "[98 more like this in the 60 s before were not logged]" in first.getMessage()
    assert first.getMessage().startswith("unhandled error on GET /x")
    assert len(rest) == 2 and "not logged" not in rest[0].getMessage()
    notes = [logging.LogRecord("a", logging.INFO, __file__, 1, "serving on %s", ("x",), None)
             for _ in range(10)]
    assert all(map(limit.filter, notes))  # information is never held back


def test_the_server_installs_it_where_requests_can_log(trained_home: Settings, tmp_path: Path) -> None:
    with BackgroundServer(copy_home(trained_home, tmp_path / "home")):
        for name in LIMITED_LOGGERS:
            assert any(isinstance(f, RepeatLimit) for f in logging.getLogger(name).filters), name


def test_streams_of_a_session_that_ends_under_them_log_a_burst_not_one_each(
        trained_home: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Several streams of one session; closing one makes Gradio drop the session, and every other
    stream ends with a 404 raised inside its started response: before, one traceback each."""
    streams = 3 * BURST
    with BackgroundServer(copy_home(trained_home, tmp_path / "home")) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        status, done = form_event(client, form_fn_index(server.app, "predict"), FORM_ANSWERS, "many")
        assert status == 200 and done
        opened = []
        for _ in range(streams):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            raw.sendall(b"GET /gradio_api/queue/data?session_hash=many HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            opened.append(raw)
        time.sleep(1)
        opened[0].close()
        deadline = time.monotonic() + 25  # Gradio looks at the session again within 10 s
        ended = 0
        while ended < streams - 1 and time.monotonic() < deadline:
            ended = 0
            for raw in opened[1:]:
                raw.settimeout(0.05)
                try:
                    while raw.recv(65536):
                        pass
                    ended += 1  # the server closed it
                except TimeoutError:
                    pass
                except OSError:
                    ended += 1
        for raw in opened:
            raw.close()
    assert ended == streams - 1, f"{ended} of {streams - 1} streams ended"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert 1 <= len(tracebacks) <= BURST, [r.getMessage() for r in tracebacks]
