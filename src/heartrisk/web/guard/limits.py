"""Refusing oversized request bodies before the app sees them.

Every body the server takes is small (17 answers fit in well under a kilobyte), so the middleware
reads the whole body first, up to the limit, then hands it to the app: a body that declares a larger
``Content-Length``, or that streams past the limit without declaring one, gets a JSON 413 and the
app never runs. (FastAPI's own ``max_body_size`` answers a declared oversize in plain text and
turns a streamed one into an error deep inside the request, so it is not used.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.web.risk_check.api import too_large


class BodySizeLimit:
    """ASGI middleware: buffer at most ``max_bytes`` of request body, else 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(self.max_bytes)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
