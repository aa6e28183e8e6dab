"""Every route the app exposes, found on the live app's router, against a table of what it may do.

The app is FastAPI (the JSON API, the dashboard, the docs) with Gradio 6 mounted at ``/``; Gradio mounts
some 90 routes of its own (``/gradio_api/*``, ``/config``, ``/login``, ``/logout``, ``/upload``,
``/file=``, ``/queue/*``, ``/call/*``, ``/run/*``, ``/stream/*``, …). The table below says, for each
(method, path template): who may use it (public, operator, or closed), which limits apply, and whether
its answers may be cached. The test asks the running server about every route it finds and fails on
any route the table does not know, so a route added later (by us or by a Gradio upgrade) cannot slip
through unclassified.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.web.app import WebSettings
from heartrisk.web.guard import auth
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import ANSWERS, copy_home

PASSWORD = "route-table-password"
OPERATOR = {"authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
SUBMISSION = {**dict.fromkeys(FEATURE_NAMES), "bmi": 26.0, "heart_disease": False, "consent": True}
MONITOR_API = ["summary", "model", "performance", "confusion", "drift", "volume", "recent", "shap",
               "synthesizer", "served", "subgroups", "calibration", "checks"]


@dataclass(frozen=True)
class Rule:
    """What a route may do. ``status`` is the answer to an anonymous request (for a closed route 404,
    for an operator route 401); ``operator_status`` the answer with the operator's password."""

    access: Literal["public", "operator", "closed"]
    status: int = 200
    operator_status: int | None = None
    limits: tuple[str, ...] = ()
    cache: Literal["no-store", "any"] = "no-store"
    sample: str | None = None
    body: dict[str, Any] | None = field(default=None, hash=False)


CLOSED = Rule("closed", 404)
STATIC = Rule("public", cache="any")

#: The JSON API, the dashboard and FastAPI's docs.
APP_ROUTES: dict[tuple[str, str], Rule] = {
    **{(m, p): Rule("public") for m in ("GET", "HEAD")
       for p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")},
    ("POST", "/api/v1/predict"): Rule("public", body=ANSWERS),
    ("POST", "/api/v1/submissions"): Rule("public", 201, limits=("submissions",), body=SUBMISSION),
    ("GET", "/api/v1/health"): Rule("public"),
    ("GET", "/api/v1/model"): Rule("public"),
    ("GET", "/model"): Rule("public"),  # the model card (issue 17)
    ("GET", "/monitor"): Rule("operator", 401, 200, limits=("login",)),
    ("GET", "/monitor/login"): Rule("public"),
    ("POST", "/monitor/login"): Rule("public", 401, limits=("login",), body={"password": "wrong"}),
    ("POST", "/monitor/logout"): Rule("public", 303),
    ("GET", "/monitor/assets/plotly.min.js"): STATIC,
    **{("GET", f"/api/v1/monitor/{name}"): Rule("operator", 401, 200, limits=("login",))
       for name in MONITOR_API},
}

#: What the page needs from Gradio: the page, its static files, and the queue (join + results).
GRADIO_OPEN: dict[tuple[str, str], Rule] = {
    ("GET", "/"): Rule("public"),
    ("HEAD", "/"): Rule("public"),
    ("GET", "/assets/{path:path}"): STATIC,
    ("GET", "/static/{path:path}"): Rule("public", cache="any",
                                         sample="/static/js/iframeResizer.contentWindow.min.js"),
    ("GET", "/theme.css"): STATIC,
    ("GET", "/favicon.ico"): STATIC,
    ("GET", "/robots.txt"): STATIC,
    ("POST", "/gradio_api/queue/join"): Rule("public", limits=("submissions", "queue")),
    # A session that never joined: refused before Gradio starts a stream (web/guard/gradio_routes.py).
    ("GET", "/gradio_api/queue/data"): Rule("public", 404,
                                            sample="/gradio_api/queue/data?session_hash=nobody"),
}

#: Everything else Gradio 6.31 mounts: closed (404 before Gradio sees the request).
GRADIO_CLOSED: list[tuple[str, str]] = [
    *itertools.product(["GET", "HEAD"], ["/openapi.json", "/gradio_api/proxy={url_path:path}",
                                        "/gradio_api/file={path_or_url:path}"]),
    *[("POST", p) for p in ("/login", "/login/", "/gradio_api/stream/{event_id}",
                            "/gradio_api/stream/{event_id}/close", "/gradio_api/reset", "/gradio_api/reset/",
                            "/gradio_api/api/{api_name}", "/gradio_api/api/{api_name}/",
                            "/gradio_api/run/{api_name}", "/gradio_api/run/{api_name}/",
                            "/gradio_api/call/v2/{api_name}", "/gradio_api/call/v2/{api_name}/",
                            "/gradio_api/call/{api_name}", "/gradio_api/call/{api_name}/",
                            "/gradio_api/cancel", "/gradio_api/component_server",
                            "/gradio_api/component_server/", "/gradio_api/upload",
                            "/gradio_api/process_recording", "/gradio_api/vibe-edit",
                            "/gradio_api/vibe-edit/",
                            "/gradio_api/undo-vibe-edit", "/gradio_api/undo-vibe-edit/",
                            "/gradio_api/vibe-code", "/gradio_api/vibe-code/",
                            "/gradio_api/vibe-starter-queries", "/gradio_api/vibe-starter-queries/")],
    *[("GET", p) for p in ("/logout", "/svelte/{path:path}", "/gradio_api/deep_link", "/config", "/config/",
                           "/pwa_icon/{size}", "/pwa_icon", "/manifest.json", "/monitoring",
                           "/monitoring/summary", "/monitoring/{key}", "/gradio_api/user/",
                           "/gradio_api/user",
                           "/gradio_api/login_check/", "/gradio_api/login_check", "/gradio_api/token/",
                           "/gradio_api/token", "/gradio_api/app_id/", "/gradio_api/app_id",
                           "/gradio_api/dev/reload", "/gradio_api/runs/", "/gradio_api/runs",
                           "/gradio_api/info", "/gradio_api/info/", "/gradio_api/openapi.json",
                           "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}",
                           "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8",
                           "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}",
                           "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file",
                           "/gradio_api/file/{path:path}", "/gradio_api/heartbeat/{session_hash}",
                           "/gradio_api/call/{api_name}/{event_id}",
                           "/gradio_api/call/v2/{api_name}/{event_id}", "/gradio_api/queue/status",
                           "/gradio_api/upload_progress", "/gradio_api/startup-events",
                           "/gradio_api/theme.css", "/gradio_api/vibe-code", "/gradio_api/vibe-code/")],
]
GRADIO_ROUTES: dict[tuple[str, str], Rule] = {**dict.fromkeys(GRADIO_CLOSED, CLOSED), **GRADIO_OPEN}

SECURITY_HEADERS = {"x-content-type-options": {"nosniff"}, "x-frame-options": {"DENY"},
                    # same-origin on the dashboard's pages (a login form must carry its Origin)
                    "referrer-policy": {"no-referrer", "same-origin"}}


def live_routes(app: Any) -> dict[str, set[tuple[str, str]]]:
    """owner ("app" or "gradio") -> its (method, path template)s, from the routers of the app and
    the app mounted in it."""
    found: dict[str, set[tuple[str, str]]] = {"app": set(), "gradio": set()}

    def walk(routes: Any, prefix: str, owner: str) -> None:
        for context in iter_route_contexts(routes):
            mounted = getattr(context.route, "app", None)
            inner = getattr(mounted, "router", None)
            if context.methods is None and inner is not None:  # a Mount: Gradio's app
                walk(inner.routes, prefix + (context.path or ""), "gradio")
                continue
            found[owner] |= {(method, prefix + context.path) for method in context.methods or ()}

    walk(app.router.routes, "", "app")
    return found


def reachable(found: dict[str, set[tuple[str, str]]]) -> dict[tuple[str, str], Rule]:
    """Each route a request can reach, with its rule. A Gradio route the app serves first (its own
    ``/openapi.json``) is shadowed: requests reach the app's."""
    rules = {key: APP_ROUTES[key] for key in found["app"]}
    rules.update({key: GRADIO_ROUTES[key] for key in found["gradio"] if key not in found["app"]})
    return rules


@pytest.fixture(scope="module")
def server(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    home = copy_home(trained_home, tmp_path_factory.mktemp("routes") / "home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(auth.PASSWORD_ENV, PASSWORD)
        web = WebSettings(port=0, security=SecuritySettings(submission_limit=1, login_failure_limit=2))
        with BackgroundServer(home, web) as running:
            yield running


def concrete(template: str, rule: Rule) -> str:
    if rule.sample:
        return rule.sample
    return re.sub(r"\{[^}]+\}", "x", template)


def request(client: httpx.Client, method: str, path: str, rule: Rule, server: BackgroundServer,
            headers: dict[str, str] | None = None) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": {"origin": server.url, **(headers or {})}}
    if method == "POST":
        if path == "/monitor/login":
            kwargs["data"] = rule.body
        elif path == "/gradio_api/queue/join":
            kwargs["json"] = {"data": FORM_ANSWERS, "fn_index": form_fn_index(server.app, "predict"),
                              "session_hash": "routes", "event_data": None, "trigger_id": None}
        else:
            kwargs["json"] = rule.body if rule.body is not None else {"data": []}
    if path.startswith("/gradio_api/queue/data"):
        with client.stream(method, path, **kwargs) as streamed:
            return streamed  # the headers are what is checked; the stream is left
    return client.request(method, path, **kwargs)


def test_the_table_knows_every_route(server: BackgroundServer) -> None:
    found = live_routes(server.app)
    assert len(found["gradio"]) > 80  # Gradio's routes were found too
    unknown = sorted({*(found["app"] - APP_ROUTES.keys()), *(found["gradio"] - GRADIO_ROUTES.keys())})
    assert unknown == [], f"routes the table does not know (classify them): {unknown}"
    gone = sorted({*(APP_ROUTES.keys() - found["app"]), *(GRADIO_ROUTES.keys() - found["gradio"])})
    assert gone == [], f"routes in the table that the app no longer has: {gone}"


def test_every_route_answers_as_the_table_says(server: BackgroundServer) -> None:
    rules = reachable(live_routes(server.app))
    page = httpx.get(server.url + "/").text
    asset = re.search(r'/assets/[\w.-]+\.js', page)
    assert asset is not None
    problems = []
    with httpx.Client(base_url=server.url, timeout=15) as client:  # an endless stream is a problem too
        for (method, template), rule in sorted(rules.items()):
            if template == "/assets/{path:path}":
                rule = Rule("public", cache="any", sample=asset.group(0))
            path = concrete(template, rule)
            where = f"{method} {template}"
            try:
                answer = request(client, method, path, rule, server)
            except httpx.HTTPError as exc:
                problems.append(f"{where}: {type(exc).__name__}: {exc}")
                continue
            if answer.status_code != rule.status:
                problems.append(f"{where}: {answer.status_code}, expected {rule.status}")
            for name, allowed in SECURITY_HEADERS.items():
                if answer.headers.get(name) not in allowed:
                    problems.append(f"{where}: {name} is {answer.headers.get(name)!r}")
            if "frame-ancestors 'none'" not in answer.headers.get("content-security-policy", ""):
                problems.append(f"{where}: no CSP frame-ancestors 'none'")
            if rule.cache == "no-store" and "no-store" not in answer.headers.get("cache-control", ""):
                problems.append(f"{where}: Cache-Control {answer.headers.get('cache-control')!r}")
            if "access-control-allow-origin" in answer.headers:
                problems.append(f"{where}: CORS {answer.headers['access-control-allow-origin']}")
            if rule.access == "operator":
                opened = request(client, method, path, rule, server, headers=OPERATOR)
                if opened.status_code != rule.operator_status:
                    problems.append(f"{where}: {opened.status_code} with the password, "
                                    f"expected {rule.operator_status}")
            if rule.access == "closed" and len(answer.content) > 200:
                problems.append(f"{where}: a closed route said {answer.text[:100]!r}")
    assert problems == [], "\n".join(problems)


def from_address(server: BackgroundServer, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, follow_redirects=False,
                        transport=httpx.HTTPTransport(local_address=address))


def test_the_limits_in_the_table_bite(server: BackgroundServer) -> None:
    """Each limit the table names, tried on its route from an address of its own."""
    table = reachable(live_routes(server.app))
    addresses = (f"127.0.1.{i}" for i in range(1, 250))
    share = form_fn_index(server.app, "share")
    for (method, template), rule in sorted(table.items()):
        where = f"{method} {template}"
        if "submissions" in rule.limits:
            with from_address(server, next(addresses)) as client:
                if template == "/gradio_api/queue/join":  # a share, then another once it is stored
                    status, done = form_event(client, share, [*FORM_ANSWERS, "No", True], "lim")
                    assert status == 200 and done and done["success"], where
                    first_status = 200
                else:
                    first_status = client.post(template, json=rule.body).status_code
                second = client.post(template, json={
                    "data": [*FORM_ANSWERS, "No", True], "fn_index": share, "session_hash": "lim2",
                    "event_data": None, "trigger_id": None} if "queue" in template else rule.body)
                assert (first_status, second.status_code) == (rule.status, 429), where
                assert int(second.headers["retry-after"]) > 0, where
        if "login" in rule.limits:
            with from_address(server, next(addresses)) as client:
                def attempt(password: str, client: httpx.Client = client, path: str = template,
                            verb: str = method) -> Any:
                    if verb == "POST":
                        return client.post(path, data={"password": password}, headers={"origin": server.url})
                    return client.get(path, auth=("admin", password))

                attempt("wrong")
                attempt("wrong")
                locked = attempt(PASSWORD)
                assert locked.status_code == 401 and int(locked.headers["retry-after"]) > 0, where
        if rule.access == "public" and method == "POST" and template.startswith("/gradio_api/"):
            assert "queue" in rule.limits, f"{where} can start an event: it needs the per-client cap"


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def test_a_method_a_route_does_not_take_gets_405_and_head_answers_as_get(server: BackgroundServer) -> None:
    """HTTP's rules for every app route (RFC 9110 §9.3.2, §15.5.6): HEAD where GET is taken gives
    GET's status and headers with no body, and any other method the path does not take gives 405
    naming those it does. The form is mounted at ``/`` and matches every path, so without care such
    requests fall through to it."""
    taken: dict[str, set[str]] = {}
    for method, template in live_routes(server.app)["app"]:
        taken.setdefault(template, set()).add(method)
    problems = []
    with httpx.Client(base_url=server.url, timeout=15) as client:
        for template, methods in sorted(taken.items()):
            path = concrete(template, APP_ROUTES.get(("GET", template), STATIC))
            if "GET" in methods:
                got, head = client.get(path), client.head(path)
                if (head.status_code, head.content) != (got.status_code, b""):
                    problems.append(f"HEAD {template}: {head.status_code} {head.content[:60]!r}, "
                                    f"GET gave {got.status_code}")
                elif head.headers.get("content-type") != got.headers.get("content-type"):
                    problems.append(f"HEAD {template}: content-type {head.headers.get('content-type')}")
            expected_allow = set(methods) | ({"HEAD"} if "GET" in methods else set())
            for method in sorted(set(METHODS) - expected_allow):
                answer = client.request(method, path, headers={"origin": server.url})
                allow = {m.strip() for m in answer.headers.get("allow", "").split(",") if m.strip()}
                if (answer.status_code, allow) != (405, expected_allow):
                    problems.append(f"{method} {template}: {answer.status_code}, Allow {sorted(allow)}; "
                                    f"expected 405, Allow {sorted(expected_allow)}")
                if "x-content-type-options" not in answer.headers:
                    problems.append(f"{method} {template}: no security headers")
    assert problems == [], "\n".join(problems)
