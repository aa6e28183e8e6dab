"""Security middleware: rate limits, security headers, generic 500s and address-free logs.

One pure ASGI middleware, outermost in the app, so it covers the JSON API, the dashboard and the Gradio
form alike:

* **Submission rate limit** per client: ``POST /api/v1/submissions`` and the form's share event (a
  Gradio ``queue/join`` whose function is the ``share`` event) take a slot of a sliding window; a slot
  is given back when the request does not store anything (4xx), so invalid bodies cost nothing. Over
  the limit the answer is 429 with ``Retry-After``.
* **Operator password failures**: a request to the dashboard or its API that carries credentials and
  gets 401 counts as a failure; after ``login_failure_limit`` failures in ``login_window_s`` every
  credentialed operator request from that client is refused unchecked (401 with ``Retry-After``,
  the answer a wrong password gets, so clients need no new case) until the window has moved on.
  (The password itself is compared in constant time by :mod:`heartrisk.web.guard.auth`.)
* **Headers**: a Content Security Policy that lets the Gradio form and the Plotly dashboard run
  (inline scripts and styles from this origin only, nothing from other sites: no fonts, no trackers;
  the dashboard also allows ``eval``, which plotly.js needs),
  ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy:
  no-referrer``, and ``Cache-Control: no-store`` on the API (a prediction echoes health answers).
* **No tracebacks to clients**: an exception that escapes the app, or a 500 from a mounted app,
  reaches the client as one generic JSON line; the details go to the server log.

Clients are told apart by their address, held only as a keyed hash: the limiter cannot list the
addresses it has seen, and nothing here logs or stores one. The windows live in this process's memory
(a key drawn at start, never written), or, with ``HEARTRISK_REDIS_URL``, in a Redis every replica
shares (:mod:`heartrisk.web.guard.shared`; the key's secret kept there), so N replicas allow what one
would. :class:`RedactAddresses` also keeps uvicorn's own loggers from writing client addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.config import settings_from_env
from heartrisk.web.guard.auth import COOKIE as OPERATOR_COOKIE
from heartrisk.web.guard.auth import REALM
from heartrisk.web.guard.shared import RedisWindow, SharedClientKeys, Window, redis_client

log = logging.getLogger(__name__)

#: Environment variables of :class:`SecuritySettings` (``heartrisk serve`` and ``up`` read them).
ENV_VARS: dict[str, str] = {
    "submission_limit": "HEARTRISK_SUBMISSION_LIMIT",
    "submission_window_s": "HEARTRISK_SUBMISSION_WINDOW_S",
    "login_failure_limit": "HEARTRISK_LOGIN_FAILURE_LIMIT",
    "login_window_s": "HEARTRISK_LOGIN_WINDOW_S",
    "redis_url": "HEARTRISK_REDIS_URL",
}

SUBMISSION_PATH = "/api/v1/submissions"
#: Gradio events whose ``concurrency_id`` is one of these store a submission (see web/form.py).
SUBMITTING_EVENTS = frozenset({"share"})
OPERATOR_PREFIXES = ("/monitor", "/api/v1/monitor")
#: Largest queue/join body read to find the event (the form's bodies are well under 2 KB).
MAX_EVENT_BODY = 256 * 1024

GENERIC_500 = {"detail": "internal error; the server log has the details", "errors": []}

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
    """Limits of the web server. Defaults suit a public form; the load test raises them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submission_limit: int = Field(
        default=120, ge=1, description="submissions one client may store per window (form and API)")
    submission_window_s: float = Field(default=3600, gt=0, description="the submission window, seconds")
    login_failure_limit: int = Field(
        default=5, ge=1, description="wrong operator passwords per client per window before a lockout")
    login_window_s: float = Field(default=900, gt=0, description="the lockout window, seconds")
    redis_url: str | None = Field(default=None, description=(
        "Redis shared by the serve replicas for the limits and the lockout (redis://host:6379/0); "
        "unset: each server counts in its own memory"))

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


# ---------------------------------------------------------------------------------------- limits
class ClientKeys:
    """Client address -> an opaque key (HMAC with a per-process secret): no address is kept."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def __call__(self, scope: Scope) -> bytes:
        client = scope.get("client")
        address = client[0] if client else ""
        return hmac.new(self._secret, str(address).encode(), hashlib.sha256).digest()[:16]


@dataclass
class SlidingWindow:
    """At most ``limit`` events per key in any ``window_s`` seconds (in memory, pruned as it goes)."""

    limit: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _events: dict[bytes, deque[float]] = field(default_factory=dict)

    def _recent(self, key: bytes, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self.prune(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def retry_after(self, key: bytes) -> float:
        """0 when ``key`` may go ahead now; else the seconds until its oldest event leaves the window."""
        now = self.clock()
        events = self._recent(key, now)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window_s - now)

    def take(self, key: bytes) -> float:
        """Reserve a slot for ``key`` if there is one (returns 0), else the seconds to wait."""
        wait = self.retry_after(key)
        if wait == 0:
            self._events[key].append(self.clock())
        return wait

    def give_back(self, key: bytes) -> None:
        """Return the newest slot of ``key`` (its request stored nothing)."""
        events = self._events.get(key)
        if events:
            events.pop()

    def record(self, key: bytes) -> None:
        self._recent(key, self.clock()).append(self.clock())

    def prune(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window_s]:
            del self._events[key]

    def __len__(self) -> int:
        return len(self._events)


# ---------------------------------------------------------------------------------------- middleware
def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> tuple[dict, bytes]:
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, content


def too_many(what: str, wait: float) -> tuple[dict, bytes]:
    seconds = max(1, int(wait + 0.999))
    return _json(429, {"detail": f"too many {what} from this client; try again in {seconds} s",
                       "errors": []}, {"retry-after": str(seconds)})


def locked_out(wait: float, html: bool) -> tuple[dict, bytes]:
    """The answer to a credentialed operator request while its client is locked out."""
    seconds = max(1, int(wait + 0.999))
    detail = (f"too many wrong operator passwords from this client; the password is not checked "
              f"for {seconds} s")
    headers = {"retry-after": str(seconds), "cache-control": "no-store"}
    if not html:  # a 401 names its scheme, as the API's own 401s do
        return _json(401, {"detail": detail, "errors": []},
                     {**headers, "www-authenticate": f'Basic realm="{REALM}"'})
    content = (f"<!doctype html><meta charset='utf-8'><title>heartrisk · monitoring</title>"
               f"<p>{detail.capitalize()}.</p>").encode()
    start = {"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(content)).encode()),
        *((k.encode(), v.encode()) for k, v in headers.items())]}
    return start, content


def content_policy(path: str) -> str:
    """The Content-Security-Policy of a path: self only; the API docs' CDN; eval for the dashboard."""
    if path in DOCS_PATHS:
        return _DOCS
    if path == "/monitor" or path.startswith("/monitor/"):
        return _DASHBOARD
    return _SELF_ONLY


def _is_operator(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPERATOR_PREFIXES)


def _credentialed(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """The request tries to prove it is the operator (so a 401 is a wrong guess, not a first visit)."""
    if scope["method"] == "POST" and scope["path"] == "/monitor/login":
        return True
    return b"authorization" in headers or OPERATOR_COOKIE.encode() in headers.get(b"cookie", b"")


def limit_windows(settings: SecuritySettings) -> tuple[Callable[[Scope], bytes], Window, Window]:
    """The client keys and the two windows: in this process's memory, or in the Redis every replica
    shares when ``redis_url`` is set (:mod:`heartrisk.web.guard.shared`)."""
    if not settings.redis_url:
        return (ClientKeys(), SlidingWindow(settings.submission_limit, settings.submission_window_s),
                SlidingWindow(settings.login_failure_limit, settings.login_window_s))
    client = redis_client(settings.redis_url)
    return (SharedClientKeys(client),
            RedisWindow(client, "submissions", settings.submission_limit, settings.submission_window_s),
            RedisWindow(client, "login-failures", settings.login_failure_limit, settings.login_window_s))


class SecurityMiddleware:
    """See the module docstring. ``submitting_events()`` gives the Gradio fn ids that store a row."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings,
                 submitting_events: Callable[[], set[int]] | None = None) -> None:
        self.app = app
        self.settings = settings
        self.keys, self.submissions, self.failures = limit_windows(settings)
        self.submitting_events = submitting_events or (lambda: set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = dict(scope.get("headers") or ())
        key = self.keys(scope)
        operator = _is_operator(path) and _credentialed(scope, headers)
        if operator:
            wait = self.failures.retry_after(key)
            if wait:  # refused unchecked; still a 401, as a wrong password is, with Retry-After
                await self._send(send, *locked_out(wait, html=not path.startswith("/api/")))
                return
        submitting = method == "POST" and path.rstrip("/") == SUBMISSION_PATH
        if method == "POST" and path.endswith("/queue/join"):
            body, receive = await _buffered(receive)
            if body is None:
                return  # the client went away
            if len(body) > MAX_EVENT_BODY:
                await self._send(send, *_json(413, {"detail": "request body too large", "errors": []}))
                return
            submitting = self._is_submitting_event(body)
        if submitting:
            wait = self.submissions.take(key)
            if wait:
                await self._send(send, *too_many("submissions", wait))
                return

        state: dict[str, Any] = {"status": None, "swallow": False}

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = status = message["status"]
                if status == 500:  # whatever a mounted app put in it, the client gets one generic line
                    state["swallow"] = True
                    start, content = _json(500, GENERIC_500)
                    await send(self._secured(start, path))
                    await send({"type": "http.response.body", "body": content})
                    return
                await send(self._secured(message, path))
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
                await self._send(send, *_json(500, GENERIC_500), path=path)
        finally:
            status = state["status"]
            if submitting and (status is None or status >= 300):
                self.submissions.give_back(key)
            if operator and status == 401:
                self.failures.record(key)

    def _is_submitting_event(self, body: bytes) -> bool:
        """A Gradio event that stores a submission (or one we cannot tell: counted, to be safe)."""
        try:
            fn_index = json.loads(body).get("fn_index")
        except (ValueError, AttributeError):
            return False  # not an event at all: Gradio refuses it
        return not isinstance(fn_index, int) or fn_index in self.submitting_events()

    def _secured(self, start: Message, path: str) -> Message:
        headers = list(start.get("headers") or [])
        present = {name.lower() for name, _ in headers}
        wanted = {**SECURITY_HEADERS, "content-security-policy": content_policy(path)}
        if path.startswith("/api/"):
            wanted["cache-control"] = "no-store"
        headers += [(k.encode(), v.encode()) for k, v in wanted.items() if k.encode() not in present]
        return {**start, "headers": headers}

    async def _send(self, send: Send, start: dict, content: bytes, path: str = "") -> None:
        await send(self._secured(start, path))
        await send({"type": "http.response.body", "body": content})


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole body (up to just past :data:`MAX_EVENT_BODY`) and a ``receive`` replaying it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_EVENT_BODY or not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


# ---------------------------------------------------------------------------------------- installing
def gradio_submitting_events(app: Any) -> Callable[[], set[int]]:
    """The fn ids of the mounted Gradio form's events that store a submission (found lazily, once)."""
    found: set[int] | None = None

    def events() -> set[int]:
        nonlocal found
        if found is None:
            ids: set[int] = set()
            for route in app.router.routes:
                blocks = getattr(getattr(route, "app", None), "get_blocks", None)
                if blocks is not None:
                    ids |= {int(i) for i, fn in blocks().fns.items()
                            if getattr(fn, "concurrency_id", None) in SUBMITTING_EVENTS}
            found = ids
        return found

    return events


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


def install_security(app: Any, settings: SecuritySettings) -> None:
    """Add the middleware as the app's outermost one (call after every other ``add_middleware``)."""
    app.add_middleware(SecurityMiddleware, settings=settings, submitting_events=gradio_submitting_events(app))
    app.state.security = settings
    redact_server_logs()
