"""Who is a client (issue 12, finding 7): proxies are trusted only when listed.

uvicorn trusted `X-Forwarded-For` from 127.0.0.1 by default, so any local hop (or anyone reaching the
server through one) could name its own "client" and start a fresh rate limit; behind a proxy on
another address every user was one client. Now `HEARTRISK_TRUSTED_PROXIES` lists the proxies (none by
default) and uvicorn's proxy headers follow it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from heartrisk.config import ConfigError, Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.web.app import WebSettings
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer, uvicorn_config
from support.web import copy_home

BODY = {**dict.fromkeys(FEATURE_NAMES), "bmi": 24.0, "heart_disease": False, "consent": True}


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    return copy_home(trained_home, tmp_path / "home")


def share(client: httpx.Client, forwarded: str | None = None) -> int:
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    return client.post("/api/v1/submissions", json=BODY, headers=headers).status_code


def test_forwarded_for_is_ignored_unless_the_proxy_is_listed(home: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEARTRISK_TRUSTED_PROXIES", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    web = WebSettings(port=0, security=SecuritySettings.from_env(submission_limit=2))
    with BackgroundServer(home, web) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert [share(client), share(client)] == [201, 201]
        for forged in ("198.51.100.7", "198.51.100.8, 127.0.0.1", "::1"):
            assert share(client, forged) == 429, forged  # still the same client: no fresh budget


def test_a_listed_proxy_tells_its_users_apart(home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTRISK_TRUSTED_PROXIES", "127.0.0.1")
    web = WebSettings(port=0, security=SecuritySettings.from_env(submission_limit=1))
    with BackgroundServer(home, web) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert share(client, "198.51.100.7") == 201
        assert share(client, "198.51.100.7") == 429
        assert share(client, "198.51.100.8") == 201  # another user behind the same proxy
        # A client may prepend anything; the proxy appends the address it saw, and that one counts.
        assert share(client, "203.0.113.1, 198.51.100.8") == 429
        other = httpx.Client(base_url=server.url, timeout=60,
                             transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:  # not a listed proxy: its header is ignored, it is itself a client
            assert share(other, "198.51.100.9") == 201
            assert share(other, "198.51.100.10") == 429


def test_the_proxy_list_is_checked_and_passed_to_uvicorn(settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTRISK_ADMIN_PASSWORD", "x" * 20)
    none = uvicorn_config(settings, WebSettings(port=0, security=SecuritySettings()))
    assert none.proxy_headers is False
    listed = SecuritySettings.from_env(env={"HEARTRISK_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    config = uvicorn_config(settings, WebSettings(port=0, security=listed))
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.0/8", "192.0.2.1"]
    for bad in ("proxy.example", "10.0.0.0/33", "*"):
        with pytest.raises(ConfigError, match="HEARTRISK_TRUSTED_PROXIES"):
            SecuritySettings.from_env(env={"HEARTRISK_TRUSTED_PROXIES": bad})
