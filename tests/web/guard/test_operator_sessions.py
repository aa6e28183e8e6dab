"""The operator's sessions and the lockout after wrong passwords (issue 12, findings 4 and 5).

A session is ended by logging out and cannot be minted by someone who knows the password; it expires
on the server. The lockout counts password guesses per source and only them: a login sent from
another site is refused before the password is looked at, stale cookies are not guesses, refusals
during a lockout do not extend it, and an operator holding a valid session is never locked out.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.web.app import WebSettings
from heartrisk.web.guard import auth
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer

PASSWORD = "operator-sessions-password"
COOKIE = "heartrisk_operator"


@pytest.fixture
def server(web_home: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundServer]:
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    web = WebSettings(port=0, security=SecuritySettings(login_failure_limit=3, login_window_s=900))
    with BackgroundServer(web_home, web) as running:
        yield running


def fresh(server: BackgroundServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


def log_in(server: BackgroundServer, password: str = PASSWORD, **headers: str) -> httpx.Response:
    with fresh(server) as client:
        return client.post("/monitor/login", data={"password": password},
                           headers={"origin": server.url, **headers})


def session_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:300]
    return response.cookies[COOKIE]


def with_cookie(server: BackgroundServer, value: str, path: str = "/monitor") -> int:
    with fresh(server) as client:
        return client.get(path, cookies={COOKIE: value}).status_code


# ------------------------------------------------------------------------------ finding 5: sessions
def test_logout_ends_the_session_on_the_server(server: BackgroundServer) -> None:
    cookie = session_of(log_in(server))
    assert with_cookie(server, cookie) == 200
    assert with_cookie(server, cookie, "/api/v1/monitor/model") == 200
    with fresh(server) as client:
        out = client.post("/monitor/logout", cookies={COOKIE: cookie}, headers={"origin": server.url})
        assert out.status_code == 303
    assert with_cookie(server, cookie) == 401  # the same value, replayed after logout
    assert with_cookie(server, cookie, "/api/v1/monitor/model") == 401
    assert with_cookie(server, session_of(log_in(server))) == 200  # a new login works


def test_a_session_cannot_be_minted_from_the_password(server: BackgroundServer) -> None:
    """The old cookie was `expiry.HMAC(sha256(password), expiry)`: anyone with the password could
    make one valid until 2100. Sessions are now issued by the server and looked up there."""
    key = hashlib.sha256(b"heartrisk operator session\x00" + PASSWORD.encode()).digest()
    expires = 4102444800  # 2100-01-01
    minted = f"{expires}.{hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()}"
    for forged in (minted, "x" * 43, "", "4102444800.deadbeef"):
        assert with_cookie(server, forged) == 401, forged
        assert with_cookie(server, forged, "/api/v1/monitor/summary") == 401, forged
    issued = session_of(log_in(server))
    assert with_cookie(server, issued[:-1] + ("A" if issued[-1] != "A" else "B")) == 401


def test_sessions_expire_on_the_server(web_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("HEARTRISK_SESSION_S", "2")
    with BackgroundServer(web_home) as server:
        answer = log_in(server)
        cookie = session_of(answer)
        assert "max-age=2" in answer.headers["set-cookie"].lower()
        assert with_cookie(server, cookie) == 200
        time.sleep(2.5)
        assert with_cookie(server, cookie) == 401  # the client kept it; the server did not


# ------------------------------------------------------------------------------ finding 4: lockout
def test_logins_from_another_site_are_refused_and_count_for_nothing(server: BackgroundServer) -> None:
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"},
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
        for _ in range(3):
            with fresh(server) as client:
                refused = client.post("/monitor/login", data={"password": "guess"}, headers=headers)
                assert refused.status_code == 403, (headers, refused.status_code)
                assert COOKIE not in refused.cookies
        with fresh(server) as client:  # not even the right password: a login CSRF plants no session
            planted = client.post("/monitor/login", data={"password": PASSWORD}, headers=headers)
            assert planted.status_code == 403 and COOKIE not in planted.cookies
    assert session_of(log_in(server))  # twelve refused attempts locked nobody out
    assert session_of(log_in(server, **{"sec-fetch-site": "same-origin"}))
    with fresh(server) as client:  # a program (no Origin, no Sec-Fetch-Site) may still log in
        assert client.post("/monitor/login", data={"password": PASSWORD}).status_code == 303


def test_stale_cookies_are_not_password_guesses(server: BackgroundServer) -> None:
    for i in range(10):
        assert with_cookie(server, f"{1000 + i}.stale") == 401
        assert with_cookie(server, "expired-session-id", "/api/v1/monitor/model") == 401
    assert session_of(log_in(server))


def test_a_logged_in_operator_is_not_locked_out(server: BackgroundServer) -> None:
    cookie = session_of(log_in(server))
    for _ in range(3):  # someone from the same address guesses
        assert log_in(server, "guess").status_code == 401
    locked = log_in(server)
    assert locked.status_code == 401 and "not checked" in locked.text
    with fresh(server) as client:
        api = client.get("/api/v1/monitor/summary", auth=("admin", PASSWORD))
        assert api.status_code == 401 and int(api.headers["retry-after"]) > 0
    assert with_cookie(server, cookie) == 200  # the session still opens the page
    assert with_cookie(server, cookie, "/api/v1/monitor/summary") == 200


def test_refusals_during_a_lockout_do_not_extend_it(web_home: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    window = 2.0
    web = WebSettings(port=0, security=SecuritySettings(login_failure_limit=3, login_window_s=window))
    with BackgroundServer(web_home, web) as server:
        started = time.monotonic()
        for _ in range(3):
            assert log_in(server, "guess").status_code == 401
        while time.monotonic() - started < window - 0.4:  # knocking all through the lockout
            assert "not checked" in log_in(server).text
            with fresh(server) as client:
                assert client.get("/api/v1/monitor/model", auth=("admin", PASSWORD)).status_code == 401
            time.sleep(0.1)
        time.sleep(max(0.0, window + 0.3 - (time.monotonic() - started)))
        assert session_of(log_in(server))  # the lockout ended with the window of the 3 guesses


def test_the_session_cookie_is_strict_and_http_only(server: BackgroundServer) -> None:
    answer = log_in(server)
    session_of(answer)
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie

