"""HEAD wherever an app route takes GET, and 405 for a method an app route does not take.

Starlette's router gives a request whose path a route matches but whose method it does not to the
next route that matches it whole. The form is mounted at ``/`` and matches every path, so
``HEAD /api/v1/health`` and ``DELETE /api/v1/predict`` got the form's 404. HTTP asks for HEAD wherever
GET is taken (RFC 9110 §9.3.2), and for 405 naming the methods that are (§15.5.6).

* :class:`HeadAsGet` sits on the app and hands a HEAD for an app route's path to the route as a GET,
  with the body's bytes dropped on the way out (the headers, ``Content-Length`` included, are GET's).
  Any other request costs it one string comparison.
* :class:`MethodNotAllowed` sits on the form's mount, so it runs only for requests no app route took
  whole (the form's own assets and queue among them), and answers 405 where an app route takes the
  path with other methods.

Which methods the app's routes take for a path is worked out once per path (about 50 µs across the
app's ~30 routes) and kept: the form's few paths come back on every page load.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartrisk.web.guard.security import json_message

#: Paths whose methods are kept; any path may be asked for, so the memory is bounded.
PATHS_KEPT = 1024


class RouteMethods:
    """The methods the app's own routes (not its mounts) take, per path."""

    def __init__(self, router: Router) -> None:
        self.router = router  # read when first asked: the form is mounted after the middleware is added
        self._for_path = lru_cache(maxsize=PATHS_KEPT)(self._methods)

    def __call__(self, scope: Scope) -> frozenset[str]:
        return self._for_path(scope["path"], scope.get("root_path", ""), len(self.router.routes))

    def _methods(self, path: str, root_path: str, _routes: int) -> frozenset[str]:
        probe = {"type": "http", "method": "GET", "path": path, "root_path": root_path}
        taken: set[str] = set()
        for route in iter_route_contexts(self.router.routes):
            if route.methods is not None and route.matches(probe)[0] is not Match.NONE:
                taken |= route.methods
        return frozenset(taken)


class HeadAsGet:
    """ASGI middleware on the app: a HEAD for a path an app route takes with GET goes there as GET."""

    def __init__(self, app: ASGIApp, methods: RouteMethods) -> None:
        self.app = app
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or "GET" not in self.methods(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class MethodNotAllowed:
    """ASGI middleware on the form's mount: 405 with ``Allow`` where an app route takes the path."""

    def __init__(self, app: ASGIApp, methods: RouteMethods) -> None:
        self.app = app
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = self.methods(scope) if scope["type"] == "http" else frozenset()
        if not taken:
            await self.app(scope, receive, send)
            return
        allowed = ", ".join(sorted(taken | ({"HEAD"} if "GET" in taken else set())))
        start, body = json_message(405, {"detail": f"{scope['method']} is not allowed here; use {allowed}",
                                         "errors": []}, {"allow": allowed})
        await send(start)
        await send({"type": "http.response.body", "body": body})
