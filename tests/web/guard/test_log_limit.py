"""A client cannot fill the server's disk by repeating a request that makes it log (session 5's
attack helper: ~7 KB of traceback per request, 2.2 MB/s from one client)."""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.web.guard.log_limit import BURST, LIMITED_LOGGERS, RepeatLimit
from heartrisk.web.server import BackgroundServer
from support.clock import Clock
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import copy_home


def records(limit: RepeatLimit, logger: str, message: str, n: int, line: int = 1) -> list[logging.LogRecord]:
    made = [logging.LogRecord(logger, logging.ERROR, __file__, line, message, ("GET", "/x"), None)
            for _ in range(n)]
    return [r for r in made if limit.filter(r)]


def test_a_call_site_gets_a_burst_a_window_and_then_says_how_many_it_left_out() -> None:
    clock = Clock(0.0)
    limit = RepeatLimit(burst=3, window_s=60, clock=clock)
    assert len(records(limit, "a", "unhandled error on %s %s", 100)) == 3
    assert len(records(limit, "a", "another site %s %s", 2, line=2)) == 2  # each site has its own budget
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


def error(message: str, exc: BaseException) -> logging.LogRecord:
    """A record as ``log.exception(message)`` makes it, from one line of this file."""
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("a", logging.ERROR, __file__, 7, message, (), sys.exc_info())


def test_one_repeated_error_does_not_hide_the_first_of_another() -> None:
    """Every unhandled error is logged by one call; the site includes what was raised where."""
    limit = RepeatLimit(burst=2, window_s=60, clock=Clock(0.0))
    assert [limit.filter(error("unhandled error", KeyError("x"))) for _ in range(5)] == [
        True, True, False, False, False]
    assert limit.filter(error("unhandled error", ValueError("a real bug")))


def wrapped(cause: BaseException) -> logging.LogRecord:
    """Starlette's "Caught handled exception, but response already started": one RuntimeError,
    raised at one line, whatever the handled exception under it was."""
    def outer() -> None:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("response already started") from exc
    try:
        outer()
    except RuntimeError:
        return logging.LogRecord("a", logging.ERROR, __file__, 7, "unhandled error", (), sys.exc_info())
    raise AssertionError("not raised")


def test_the_same_wrapper_around_different_causes_is_not_one_site() -> None:
    """Attack helper: five wrapped 404s used up the site and hid a wrapped validation error."""
    limit = RepeatLimit(burst=2, window_s=60, clock=Clock(0.0))
    assert [limit.filter(wrapped(LookupError("404"))) for _ in range(4)] == [True, True, False, False]
    assert limit.filter(wrapped(ValueError("a real bug")))


def limits_on(names: tuple[str, ...]) -> list[RepeatLimit]:
    return [f for name in names for f in logging.getLogger(name).filters if isinstance(f, RepeatLimit)]


def test_each_server_has_its_own_while_it_runs(trained_home: Settings, tmp_path: Path) -> None:
    with BackgroundServer(copy_home(trained_home, tmp_path / "home")):
        installed = limits_on(LIMITED_LOGGERS)
        assert len(installed) == len(LIMITED_LOGGERS) and len(set(map(id, installed))) == 1
    assert limits_on(LIMITED_LOGGERS) == []


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
            assert raw.recv(4096).startswith(b"HTTP/1.1 200")  # the stream has started
            opened.append(raw)
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
