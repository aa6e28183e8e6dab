"""What guards every route: security headers, a lockout after wrong operator passwords, constant-time
comparisons, loopback by default, no traceback or internal detail to a client, no address in the log."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from heartrisk.cli import app as cli_app
from heartrisk.config import Settings
from heartrisk.runtime.up import UpOptions
from heartrisk.store.groups import HEART_USER, open_group
from heartrisk.web.app import WebSettings
from heartrisk.web.guard import auth
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, PASSWORD, form_event, form_fn_index
from support.web import ANSWERS, copy_home

PAGES = ["/", "/api/v1/health", "/api/v1/model", "/monitor", "/monitor/login", "/docs", "/openapi.json",
         "/api/v1/no-such-thing", "/api/v1/monitor/summary"]


@pytest.fixture(scope="module")
def home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return copy_home(trained_home, tmp_path_factory.mktemp("access") / "home")


@pytest.fixture
def server(home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundServer]:
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    web = WebSettings(port=0, security=SecuritySettings(login_failure_limit=3))
    with BackgroundServer(home, web) as running:
        yield running


def test_every_page_carries_the_security_headers(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in PAGES:
            headers = client.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY", path
            # no referrer to other sites; the dashboard's own pages send theirs to themselves only,
            # so that a browser's login POST carries its Origin (web/guard/operator_access.py)
            assert headers["referrer-policy"] in ("no-referrer", "same-origin"), path
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
            assert "default-src 'self'" in csp, path
            if path.startswith("/api/"):
                assert headers["cache-control"] == "no-store", path
        assert "cdn.jsdelivr.net" not in client.get("/").headers["content-security-policy"]


def test_wrong_passwords_lock_the_client_out(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:  # a summary is slow on a busy machine
        for _ in range(3):
            wrong = client.post("/monitor/login", data={"password": "guess"}, follow_redirects=False)
            assert wrong.status_code == 401 and "Wrong password" in wrong.text
        right = client.post("/monitor/login", data={"password": PASSWORD}, follow_redirects=False)
        assert right.status_code == 401 and "not checked" in right.text  # locked: not even checked
        assert 800 < int(right.headers["retry-after"]) <= 900
        api = client.get("/api/v1/monitor/summary", auth=("admin", PASSWORD))
        assert api.status_code == 401 and "too many wrong operator passwords" in api.json()["detail"]
        assert client.get("/monitor").status_code == 401  # the login page itself still shows
        assert client.post("/api/v1/predict", json=ANSWERS).status_code == 200  # the public side works
    other = httpx.Client(base_url=server.url, timeout=60,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with other:  # another address is not locked out
        assert other.get("/api/v1/monitor/summary", auth=("admin", PASSWORD)).status_code == 200
        assert other.post("/monitor/login", data={"password": PASSWORD},
                          follow_redirects=False).status_code == 303


def test_every_password_check_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    check = auth.OperatorAuth(password="s3cret-password", source="test")
    assert not check.check_password("s3cret-passwore")
    assert calls[-1] == (b"s3cret-passwore", b"s3cret-password")
    calls.clear()
    assert not check.check_basic("Basic " + base64.b64encode(b"admin:nope").decode())
    assert (b"nope", b"s3cret-password") in calls and (b"admin", b"admin") in calls  # both, always
    # A session cookie is looked up by its SHA-256 (web/guard/sessions.py): the server holds no secret the
    # comparison could leak, so there is nothing to compare in constant time.


def test_loopback_is_the_default_everywhere() -> None:
    assert WebSettings().host == "127.0.0.1" and UpOptions().host == "127.0.0.1"
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    for name in ("serve", "up"):
        host = next(p for p in commands[name].params if p.name == "host")
        assert host.default == "127.0.0.1", name


def test_no_traceback_or_internal_detail_reaches_a_client(trained: Settings) -> None:
    with BackgroundServer(trained) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        body = {**ANSWERS, "heart_disease": True, "consent": True}
        assert client.post("/api/v1/submissions", json=body).status_code == 201
        log = Path(open_group(trained, HEART_USER).uri) / "_delta_log"
        for path in log.iterdir():  # the table's log is damaged: every write now fails inside delta-rs
            path.write_text("{not json")
        broken = client.post("/api/v1/submissions", json=body)
        assert broken.status_code == 500
        assert broken.json() == {"detail": "internal error; the server log has the details", "errors": []}
        share = form_fn_index(server.app, "share")
        status, done = form_event(client, share, [*FORM_ANSWERS, "No", True], "x")
        assert status == 200 and done is not None and not done["success"]
        shown = str(done)
        for leak in ("Traceback", "delta", "Kernel", str(trained.home), "json", ".py"):
            assert leak not in shown, leak
        missing = client.get("/api/v1/nothing-here")
        assert missing.status_code == 404 and "Traceback" not in missing.text


def test_uvicorn_client_lines_lose_the_address(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from heartrisk.web.app import WebSettings
    from heartrisk.web.server import uvicorn_config

    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    uvicorn_config(settings, WebSettings(port=0))  # the app, then uvicorn's own logging set-up
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.2:51234", "/x")
        logger.info("Uvicorn running on %s://%s:%d", "http", "127.0.0.1", 80)
    finally:
        logger.removeHandler(handler)
    assert seen == ['- - "WebSocket /x" [accepted]', "Uvicorn running on http://127.0.0.1:80"]
