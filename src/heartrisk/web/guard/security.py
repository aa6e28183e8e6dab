"""Security middleware: the Host check, the headers on every answer, no tracebacks to clients.

One pure ASGI middleware, outermost in the app, so it covers the JSON API, the dashboard and the Gradio
form alike:

* **Host**: a request whose ``Host`` is not one the server answers to (``HEARTRISK_ALLOWED_HOSTS``,
  by default the loopback names and the address it serves on) gets 400 without the name echoed, and
  the proxy headers Gradio would build its own URL from (``X-Forwarded-Host``, ``X-Gradio-Server``,
  ``X-Forwarded-Proto``) are removed, so no page or redirect reflects a host a client chose.
  (uvicorn has already taken the client address and scheme from a trusted proxy's headers.)
* **Headers**: a Content Security Policy that lets the Gradio form and the Plotly dashboard run
  (inline scripts and styles from this origin only, nothing from other sites: no fonts, no trackers;
  the dashboard also allows ``eval``, which plotly.js needs), ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: no-referrer``;
  ``Cache-Control: no-store`` on every answer but static files (a prediction, the form's queue
  stream and a share all carry a person's answers or risk); ``Strict-Transport-Security`` on answers
  sent over https (``HEARTRISK_HSTS_MAX_AGE_S``); and no ``Access-Control-Allow-*`` header ever
  (Gradio answered any localhost origin with credentialed CORS; the app declares no cross-origin
  use, and anything that slips past that is stripped here).
* **No tracebacks to clients**: an exception that escapes the app, or a 500 from a mounted app,
  reaches the client as one generic JSON line; the details go to the server log.

The limits are counted where the thing they protect happens, not by URL (issue 12 found the share
event reachable through routes the middleware did not count): the submission budget
(:class:`~heartrisk.web.guard.rate_limits.SubmissionLimit`) in the API's route and in the form's
share function, the operator's password guesses in web/guard/operator_access.py, the form's queue
share in web/guard/gradio_routes.py.

Clients are told apart (and their budgets kept) by web/guard/rate_limits.py; which address is the
client's is uvicorn's to say, from ``HEARTRISK_TRUSTED_PROXIES`` (web/server.py).
:class:`RedactAddresses` also keeps uvicorn's own loggers from writing addresses.
With ``HEARTRISK_REDIS_URL`` the budgets, the lockout's failure counts and the operator sessions live
in a Redis every replica shares (web/guard/shared.py), so N replicas allow what one would.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.config import ConfigError, settings_from_env

log = logging.getLogger(__name__)

#: Environment variables of :class:`SecuritySettings` (``heartrisk serve`` and ``up`` read them).
ENV_VARS: dict[str, str] = {
    "submission_limit": "HEARTRISK_SUBMISSION_LIMIT",
    "submission_window_s": "HEARTRISK_SUBMISSION_WINDOW_S",
    "login_failure_limit": "HEARTRISK_LOGIN_FAILURE_LIMIT",
    "login_window_s": "HEARTRISK_LOGIN_WINDOW_S",
    "session_s": "HEARTRISK_SESSION_S",
    "trusted_proxies": "HEARTRISK_TRUSTED_PROXIES",
    "allowed_hosts": "HEARTRISK_ALLOWED_HOSTS",
    "queue_per_client": "HEARTRISK_QUEUE_PER_CLIENT",
    "request_timeout_s": "HEARTRISK_REQUEST_TIMEOUT_S",
    "hsts_max_age_s": "HEARTRISK_HSTS_MAX_AGE_S",
    "redis_url": "HEARTRISK_REDIS_URL",
}

GENERIC_500 = {"detail": "internal error; the server log has the details", "errors": []}
#: Host names every server answers to besides the address it serves on.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: Request headers a client could use to make a page or redirect name another host (Gradio builds its
#: root URL from them). A trusted proxy's scheme and client address reach uvicorn first.
HOST_OVERRIDES = frozenset({b"x-forwarded-host", b"x-gradio-server", b"x-forwarded-proto"})
#: Static files (the same for everyone, no answers in them): their own caching is kept.
STATIC_PREFIXES = ("/assets/", "/static/", "/monitor/assets/")
STATIC_PATHS = frozenset({"/theme.css", "/favicon.ico", "/robots.txt"})

_SELF_ONLY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; "
              "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
              "form-action 'self'; frame-ancestors 'none'")
#: FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN (the rest of the site does not).
_DOCS = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
         "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
         "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
         "font-src 'self' https://fonts.gstatic.com; worker-src 'self' blob:; connect-src 'self'; "
         "object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
#: plotly.min.js compiles some functions at run time (``new Function``); only the operator's dashboard,
#: behind the password, gets 'unsafe-eval' for it.
_DASHBOARD = _SELF_ONLY.replace("script-src 'self' 'unsafe-inline'",
                                "script-src 'self' 'unsafe-inline' 'unsafe-eval'")

SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
}


class SecuritySettings(BaseModel):
    """Limits and trust of the web server. Defaults suit a public form; the load test raises them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submission_limit: int = Field(
        default=120, ge=1, description="submissions one client may store per window (form and API)")
    submission_window_s: float = Field(default=3600, gt=0, description="the submission window, seconds")
    login_failure_limit: int = Field(
        default=5, ge=1, description="wrong operator passwords per client per window before a lockout")
    login_window_s: float = Field(default=900, gt=0, description="the lockout window, seconds")
    session_s: float = Field(default=12 * 3600, gt=0,
                             description="an operator session ends this long after the login, seconds")
    trusted_proxies: tuple[str, ...] = Field(default=(), description=(
        "addresses or networks (CIDR) of the reverse proxies in front of the server: only their "
        "X-Forwarded-For / X-Forwarded-Proto are believed. Default none: the client is the address "
        "that connected (uvicorn's own default trusted 127.0.0.1, so any local hop could name its own "
        "client)"))
    allowed_hosts: tuple[str, ...] = Field(default=(), description=(
        "Host names the server answers to, besides the loopback names ('*': any). Default: the "
        "address it serves on; required when serving on every interface"))
    queue_per_client: int = Field(default=8, ge=1, description=(
        "form events one client may have waiting in the queue (one client filled the whole queue)"))
    request_timeout_s: float = Field(default=15, gt=0, description=(
        "a request's headers and body must arrive within this many seconds, or the connection is "
        "closed (300 half-sent requests used to stay open)"))
    hsts_max_age_s: int = Field(default=31_536_000, ge=0, description=(
        "Strict-Transport-Security max-age sent on answers over https (0: none)"))
    redis_url: str | None = Field(default=None, description=(
        "Redis shared by the serve replicas for the limits, the lockout and the operator sessions "
        "(redis://host:6379/0); unset: each server keeps them in its own memory"))

    @field_validator("trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or "
                                 "10.0.0.0/24); list the proxies themselves, never '*'") from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(host.lower().strip("[]") for host in value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r}: use redis://host:port/db, rediss://… or unix://…")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> SecuritySettings:
        """Settings from ``HEARTRISK_SUBMISSION_LIMIT`` and friends; a bad value fails at start."""
        return settings_from_env(cls, ENV_VARS, "security settings", env, overrides)

    def hosts_for(self, bind_host: str) -> frozenset[str] | None:
        """The Host names to answer for a server bound to ``bind_host`` (None: any)."""
        if "*" in self.allowed_hosts:
            return None
        if self.allowed_hosts:  # loopback names too: a local health check or proxy names them
            return frozenset(self.allowed_hosts) | LOOPBACK_NAMES
        bound = bind_host.lower().strip("[]")
        if bound in ("0.0.0.0", "::", ""):
            raise ConfigError(
                f"{ENV_VARS['allowed_hosts']}: serving on every interface needs the host names clients "
                "use, e.g. HEARTRISK_ALLOWED_HOSTS=heart.example.org (or '*' to answer any Host header)")
        return LOOPBACK_NAMES | {bound}


# ---------------------------------------------------------------------------------------- middleware
def json_message(status: int, body: dict[str, Any],
                 headers: Mapping[str, str] | None = None) -> tuple[dict, bytes]:
    """A JSON answer as the ASGI start message and the body bytes."""
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, content


def content_policy(path: str) -> str:
    """The Content-Security-Policy of a path: self only; the API docs' CDN; eval for the dashboard."""
    if path in DOCS_PATHS:
        return _DOCS
    if path == "/monitor" or path.startswith("/monitor/"):
        return _DASHBOARD
    return _SELF_ONLY


def is_static(path: str) -> bool:
    return path in STATIC_PATHS or path.startswith(STATIC_PREFIXES)


def host_name(value: str) -> str:
    """``Example.org:8080`` -> ``example.org``; ``[::1]:7860`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityMiddleware:
    """See the module docstring. ``allowed_hosts`` None answers any Host."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings,
                 allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = scope.get("headers") or []
        if self.allowed_hosts is not None:
            host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
            if host_name(host) not in self.allowed_hosts:
                refused = json_message(400, {"detail": "unknown Host header", "errors": []})
                await self._send(send, *refused, scope)
                return
        scope = {**scope, "headers": [(k, v) for k, v in headers if k not in HOST_OVERRIDES]}
        state: dict[str, Any] = {"status": None, "swallow": False}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = status = message["status"]
                if status == 500:  # whatever a mounted app put in it, the client gets one generic line
                    state["swallow"] = True
                    start, content = json_message(500, GENERIC_500)
                    await send(self._secured(start, scope))
                    await send({"type": "http.response.body", "body": content})
                    return
                await send(self._secured(message, scope))
                return
            if state["swallow"]:
                return
            await send(message)

        try:
            await self.app(scope, receive, send_secured)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)  # no client address, no body
            if state["status"] is None:
                state["status"] = 500
                await self._send(send, *json_message(500, GENERIC_500), scope)

    def _secured(self, start: Message, scope: Scope) -> Message:
        path = scope["path"]
        wanted = {**SECURITY_HEADERS, "content-security-policy": content_policy(path)}
        if not is_static(path):
            wanted["cache-control"] = "no-store"
        if scope.get("scheme") == "https" and self.settings.hsts_max_age_s:
            wanted["strict-transport-security"] = f"max-age={self.settings.hsts_max_age_s}"
        forced = {b"cache-control"} if "cache-control" in wanted else set()
        headers = [(k, v) for k, v in start.get("headers") or []
                   if not k.lower().startswith(b"access-control-allow-") and k.lower() not in forced]
        present = {name.lower() for name, _ in headers}
        headers += [(k.encode(), v.encode()) for k, v in wanted.items() if k.encode() not in present]
        return {**start, "headers": headers}

    async def _send(self, send: Send, start: dict, content: bytes, scope: Scope) -> None:
        await send(self._secured(start, scope))
        await send({"type": "http.response.body", "body": content})


# ---------------------------------------------------------------------------------------- installing
class RedactAddresses(logging.Filter):
    """Blanks the client address of uvicorn's per-request lines (access log, WebSocket handshakes).

    Those lines all start with ``'%s - "'`` and take the client address as their first argument; the
    server's own lines (``Uvicorn running on …``) are left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (isinstance(record.msg, str) and record.msg.startswith('%s - "')
                and isinstance(record.args, tuple) and record.args):
            record.args = ("-", *record.args[1:])
        return True


_REDACT = RedactAddresses()
#: Loggers that may see a client address: uvicorn's WebSocket lines go to ``uvicorn.error``.
REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_server_logs() -> None:
    """Install :class:`RedactAddresses` on uvicorn's loggers (idempotent)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def install_security(app: Any, settings: SecuritySettings, bind_host: str = "127.0.0.1") -> None:
    """Add the middleware as the app's outermost one (call after every other ``add_middleware``)."""
    app.add_middleware(SecurityMiddleware, settings=settings, allowed_hosts=settings.hosts_for(bind_host))
    app.state.security = settings
    redact_server_logs()
