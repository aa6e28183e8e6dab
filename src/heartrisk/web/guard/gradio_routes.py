"""The guard in front of Gradio: only the routes the page uses are open, and every event is checked.

Gradio 6 mounts some 90 routes (tests/web/guard/test_security_routes.py lists them). The risk-check page uses
nine: the page itself, its static files (``/assets``, ``/static``, ``/theme.css``, ``/favicon.ico``,
``/robots.txt``) and the queue (``POST /gradio_api/queue/join``, ``GET /gradio_api/queue/data``),
as a browser driving the page showed. Every other route answers 404 before Gradio sees the request:

* ``/gradio_api/run/<name>``, ``/api/<name>`` ran an event **without its validator**, and
  ``/call/<name>`` without being counted by the rate limit (issue 12: rows stored without consent).
  ``Blocks.queue(api_open=False)`` closes ``/run`` and ``/api`` for queued events (web/app.py sets it
  too), but not ``/call``, ``/call/v2`` or ``/stream``; the allow-list closes all of them, and any
  route a Gradio upgrade adds, until someone opens it on purpose.
* ``POST /gradio_api/upload`` stored any file in the temp folder and answered with its path, from any
  site, with no limit and no cleanup; the form has no file field. Closed, with ``/file=``, ``/file/``,
  ``/proxy=`` and ``/upload_progress``: nothing reaches the disk through Gradio.
* ``GET /gradio_api/queue/data`` for a session that never joined: Gradio started the stream, then
  raised 404 inside it, and the server logged a ~7 KB traceback per request (a way to fill the
  operator's disk). Such a stream is answered 404 here, before Gradio.
* ``/config`` and ``/logout`` built URLs from the Host header; ``/config`` is not needed (the page
  carries its config) and ``/logout`` belongs to Gradio's own login, which is not used.

A ``queue/join`` body is checked against the event it names before Gradio parses it: a known event,
exactly its number of inputs, each of the type its component sends (text, one of the choices, a
tick box's JSON boolean). Gradio's own errors for a wrong shape quoted the inputs back to the client
and printed them to the server log (``Received inputs: [...]``, ``Value: ... is not in the list of
choices``), a person's answers among them; a malformed event now gets one fixed line (422). The page's
validators and the functions themselves then check the answers, the diagnosis and the consent.

Two limits are applied at the join, per client (web/guard/rate_limits.py says how clients are told apart):

* **Fairness**: at most ``queue_per_client`` events of one client waiting (joins in flight plus its
  events in Gradio's queue); one client's 1,000 joins filled the queue and 345 other people got 503.
* **Shares**: a share event is refused (429) while the client's submission budget is spent. The
  budget itself is counted in the share function, where the row is stored (web/risk_check/form.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import gradio as gr
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.web.guard.rate_limits import ClientKeys, SubmissionLimit, retry_seconds, too_many_detail
from heartrisk.web.guard.security import json_message

JOIN = ("POST", "/gradio_api/queue/join")
STREAM = ("GET", "/gradio_api/queue/data")
#: (method, path template) of every Gradio route the page needs; anything else is 404.
OPEN_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/"), ("HEAD", "/"),
    ("GET", "/assets/{path:path}"), ("GET", "/static/{path:path}"),
    ("GET", "/theme.css"), ("GET", "/favicon.ico"), ("GET", "/robots.txt"),
    JOIN, STREAM,
)
#: Keys a queue/join body may have (Gradio's ``PredictBody``); ``oauth_token`` and friends are not.
EVENT_KEYS = frozenset({"data", "fn_index", "session_hash", "event_data", "trigger_id", "event_id",
                        "batched", "simple_format"})
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Longest text a number box may send (a BMI needs a few characters; the body limit is 64 KB).
MAX_TEXT = 100
NO_SESSION = "no such session: the page joins the queue before it reads its results; reload the page"
MALFORMED = "this request does not come from the risk-check page; reload the page and try again"


class GradioGuard:
    """ASGI middleware on the Gradio app (see the module docstring)."""

    def __init__(self, app: ASGIApp, blocks: gr.Blocks, keys: ClientKeys, limit: SubmissionLimit,
                 queue_per_client: int, submitting: Iterable[str] = ("share",)) -> None:
        self.app = app
        self.blocks = blocks
        self.keys = keys
        self.limit = limit
        self.queue_per_client = queue_per_client
        self.submitting = frozenset(submitting)
        self.routes = [(method, compile_path(path)[0]) for method, path in OPEN_ROUTES]
        self.joining: Counter[bytes] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # Gradio 6 serves none; refuse rather than pass through
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], _route_path(scope)
        if not any(method == m and pattern.match(path) for m, pattern in self.routes):
            await _answer(send, 404, "Not Found")
            return
        if (method, path) == STREAM and not self.known_session(scope):
            await _answer(send, 404, NO_SESSION)
            return
        if (method, path) != JOIN:
            await self.app(scope, receive, send)
            return
        body, receive = await _body(receive)
        if body is None:
            return  # the client went away
        fn = self.event(body)
        if fn is None:
            await _answer(send, 422, MALFORMED)
            return
        key = self.keys(scope)
        if fn.concurrency_id in self.submitting:
            wait = self.limit.retry_after(scope)
            if wait:
                await _answer(send, 429, too_many_detail("submissions", wait),
                              {"retry-after": str(retry_seconds(wait))})
                return
        if self.joining[key] + self.waiting(key) >= self.queue_per_client:
            await _answer(send, 429, f"this client has {self.queue_per_client} requests waiting already; "
                                     "try again when they are done", {"retry-after": "5"})
            return
        self.joining[key] += 1  # counted before the first await, so concurrent joins see each other
        try:
            await self.app(scope, receive, send)
        finally:
            self.joining[key] -= 1
            if not self.joining[key]:
                del self.joining[key]

    def known_session(self, scope: Scope) -> bool:
        """The event stream asked for belongs to a session that joined the queue.

        Gradio itself answers an unknown one by starting the stream (200) and raising 404 inside it,
        which the server logged as a ~7 KB traceback per request. Read from Gradio's queue
        (internal; when a Gradio upgrade moves it, every stream is passed to Gradio as before and
        the test of this check fails)."""
        pending = getattr(getattr(self.blocks, "_queue", None), "pending_messages_per_session", None)
        if pending is None:
            return True
        # Exactly one session named: Gradio reads the last of several, blank ones included.
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        named = query.get("session_hash", [])
        return len(named) == 1 and bool(SESSION_HASH.fullmatch(named[0])) and named[0] in pending

    def waiting(self, key: bytes) -> int:
        """This client's events in Gradio's queue, not yet started.

        Read from Gradio's queue (``Blocks._queue``, internal: the fairness test fails if a Gradio
        upgrade moves it) rather than kept alongside: an event that ends, fails or is dropped when its
        client goes away leaves the queue, so nothing here can drift from it."""
        queue = getattr(self.blocks, "_queue", None)
        count = 0
        for waiting in getattr(queue, "event_queue_per_concurrency_id", {}).values():
            count += sum(1 for event in waiting.queue if self.keys(event.request.scope) == key)
        return count

    def event(self, body: bytes) -> Any:
        """The Blocks function a join body names, if the body is exactly what the page sends."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # 1 KB of "[" nests deeper than the parser may go
            return None
        if not isinstance(payload, dict) or not set(payload) <= EVENT_KEYS:
            return None
        fn_index, data = payload.get("fn_index"), payload.get("data")
        if type(fn_index) is not int or fn_index not in self.blocks.fns or not isinstance(data, list):
            return None
        session = payload.get("session_hash")
        if not isinstance(session, str) or not SESSION_HASH.fullmatch(session):
            return None
        if payload.get("event_data") is not None and not isinstance(payload["event_data"], dict):
            return None
        if payload.get("trigger_id") is not None and type(payload["trigger_id"]) is not int:
            return None
        fn = self.blocks.fns[fn_index]
        if len(data) != len(fn.inputs) or not all(map(fits, fn.inputs, data)):
            return None
        return fn


def fits(component: Any, value: Any) -> bool:
    """``value`` is what the page sends for ``component``. Components the form does not use are
    refused, so a new kind of field has to be taught here first."""
    if isinstance(component, gr.Checkbox):
        return type(value) is bool
    if isinstance(component, gr.Dropdown | gr.Radio):
        return value is None or (isinstance(value, str) and value in {v for _, v in component.choices})
    if isinstance(component, gr.Textbox):
        return value is None or (isinstance(value, str) and len(value) <= MAX_TEXT)
    return False


def _route_path(scope: Scope) -> str:
    """The path as the Gradio app routes it (without a root path the app is served under)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


async def _body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (web/guard/limits.py has already capped it) and a ``receive`` replaying it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
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


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    start, content = json_message(status, {"detail": detail, "errors": []}, headers)
    await send(start)
    await send({"type": "http.response.body", "body": content})
