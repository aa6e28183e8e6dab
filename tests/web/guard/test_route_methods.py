"""HEAD as GET and 405 at the ASGI level, without uvicorn (which drops a HEAD's body by itself, so the
server tests in test_security_routes.py could not see a body sent by the app)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.routing import Mount

from heartrisk.web.guard.route_methods import HeadAsGet, MethodNotAllowed, RouteMethods


def app_with_a_catch_all_mount() -> FastAPI:
    """An app shaped like ours: a GET route, a POST route, and an app mounted at ``/`` after them."""
    app = FastAPI()
    app.get("/thing")(lambda: PlainTextResponse("the thing's body"))
    app.post("/act")(lambda: {"done": True})
    fallback = FastAPI()
    fallback.get("/page")(lambda: PlainTextResponse("a page"))
    app.router.routes.append(Mount("", app=fallback))
    methods = RouteMethods(app.router)
    app.add_middleware(HeadAsGet, methods=methods)
    fallback.add_middleware(MethodNotAllowed, methods=methods)
    return app


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def answers(requests: list[tuple[str, str]]) -> list[Answer]:
    """Each request sent to the app as a bare ASGI call (httpx's client drops a HEAD's body itself)."""
    app = app_with_a_catch_all_mount()

    async def one(method: str, path: str) -> Answer:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": b"", "headers": [(b"host", b"test")], "server": ("test", 80),
                 "client": ("127.0.0.1", 5000)}
        await app(scope, receive, send)
        return Answer(sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]},
                      b"".join(m.get("body", b"") for m in sent[1:]))

    async def all_of() -> list[Answer]:
        return [await one(method, path) for method, path in requests]

    return asyncio.run(all_of())


def test_head_gets_the_get_headers_and_no_body() -> None:
    got, head = answers([("GET", "/thing"), ("HEAD", "/thing")])
    assert (got.status, got.body) == (200, b"the thing's body")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(got.body))
    assert head.headers["content-type"] == got.headers["content-type"]


def test_another_method_gets_405_naming_those_taken_and_the_mount_keeps_its_own_paths() -> None:
    put, get_act, page, missing = answers([("PUT", "/thing"), ("GET", "/act"), ("GET", "/page"),
                                           ("DELETE", "/nowhere")])
    assert (put.status, put.headers["allow"]) == (405, "GET, HEAD")
    assert (get_act.status, get_act.headers["allow"]) == (405, "POST")
    assert (page.status, page.body) == (200, b"a page")
    assert missing.status == 404
