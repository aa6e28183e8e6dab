"""``POST /api/v1/predict`` answered ahead of FastAPI's machinery when the request is plain.

Issue 16 asks for at most 1 ms of server CPU for the default response on 2 cores. In the process,
the whole app took 0.72 ms for it, of which the answer itself (parse, validate, score, explain, the
context, JSON) was 0.44 ms; the rest was routing an included router (matched twice), FastAPI's
dependency solving and its exception and exit-stack layers. With this path: 0.53 ms
(``bench/asgi_cost.py``). This
middleware sits inside the app's guard (Host check, headers, body size, CORS), so every request still
passes them, and answers the plain request itself with the same functions as the route
(:func:`~heartrisk.web.risk_check.api.answer_inline`, the same pydantic model, the same strict JSON).

Anything it does not take whole goes to the FastAPI route with its body replayed, so there is one
place for every error and every answer that is not a plain 200: a query other than ``explain``/
``context`` with ``true``/``false``/``1``/``0``, a content type other than ``application/json``, a
body that does not parse or validate, no model (503), and an answer too dear for the event loop (a
forest: the route runs it in the thread pool). ``tests/web/test_fast_path.py``
sends the same requests, valid and not, to a server with it and one without, and compares the
answers byte for byte. ``WebSettings(fast_predict=False)`` (``HEARTRISK_FAST_PREDICT=0``) turns it
off.
"""

from __future__ import annotations

import json

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.web.risk_check.api import PREFIX, answer_inline
from heartrisk.web.risk_check.model_cache import ModelUnavailableError
from heartrisk.web.risk_check.schemas import Answers, answers_dict
from heartrisk.web.risk_check.strict_json import unique_keys

PATH = PREFIX + "/predict"
#: Query values taken here; FastAPI (pydantic's lax bool) takes more, and gets the rest.
FLAGS = {b"true": True, b"1": True, b"false": False, b"0": False}
HEADERS = [(b"content-type", b"application/json")]


class PredictFastPath:
    """ASGI middleware: the plain ``POST /api/v1/predict`` answered here (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] != scope.get("root_path", "") + PATH):
            await self.app(scope, receive, send)
            return
        message = await receive()  # the whole body: BodySizeLimit, outside, read it and replays it
        body = answer(self.state, scope, message) if not message.get("more_body") else None
        if body is None:
            await self.app(scope, _replay(message, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), *HEADERS]})
        await send({"type": "http.response.body", "body": body})


def answer(state: State, scope: Scope, message: Message) -> bytes | None:
    """The response body for a plain request, or None for the FastAPI route to answer.

    Only the request's own faults and a missing model send it to the route, which answers them (422,
    400, 503); a fault of ours while scoring is raised, as the route would, and the guard answers it
    with the generic 500 and logs it (scoring it a second time could count it twice)."""
    flags = _flags(scope.get("query_string", b""))
    if flags is None or message["type"] != "http.request" or not _is_json(scope):
        return None
    try:
        data = json.loads(message.get("body", b""), object_pairs_hook=unique_keys)
        row = answers_dict(Answers.model_validate(data, from_attributes=True))
    except Exception:  # not JSON, not UTF-8, a key twice, nested too deep, invalid: the route says why
        return None
    try:
        inline = answer_inline(state, row, *flags)
    except ModelUnavailableError:
        return None  # the route answers 503
    return inline.encode() if inline is not None else None  # None: the route uses the thread pool


def _flags(query: bytes) -> tuple[bool, bool] | None:
    """(explain, context) from a query of at most one of each with a plain value, else None."""
    found = {b"explain": True, b"context": True}
    seen: set[bytes] = set()
    for part in query.split(b"&") if query else ():
        key, sep, value = part.partition(b"=")
        if not sep or key not in found or key in seen or value not in FLAGS:
            return None
        seen.add(key)
        found[key] = FLAGS[value]
    return found[b"explain"], found[b"context"]


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.partition(b";")[0].strip().lower() == b"application/json"
    return False


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` for the route: the message read here first, then the connection's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
