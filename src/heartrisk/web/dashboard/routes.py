"""The monitoring dashboard at ``/monitor`` and its JSON API at ``/api/v1/monitor/*``.

:func:`mount_monitor` adds both to the web app (the same FastAPI app that serves the risk form), behind
the operator password (:mod:`heartrisk.web.guard.auth`): the page answers 401 with a login form, the API 401
with an HTTP Basic challenge. Who counts as the operator (a server-side session, or the password
with the request, behind a lockout) is
:class:`~heartrisk.web.guard.operator_access.OperatorAccess`'s to say. Everything is drawn live from
the store and the registry through a short-lived :class:`~.cache.SnapshotCache`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import plotly
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from heartrisk.config import Settings
from heartrisk.web.dashboard.cache import DashboardSettings, SnapshotCache
from heartrisk.web.dashboard.page import dashboard_page, login_page
from heartrisk.web.guard.auth import REALM, OperatorAuth
from heartrisk.web.guard.operator_access import PRIVATE, OperatorAccess, locked_out, lockout
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.guard.shared import GuardState, guard_state
from heartrisk.web.risk_check.schemas import ErrorBody

PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
#: What every monitoring API route can answer besides 200 (documented in the OpenAPI document).
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no operator password or session, a wrong one, or too "
                                             "many wrong ones from this client (`Retry-After`)"},
    422: {"model": ErrorBody, "description": "a query parameter is invalid; `errors` names it"},
}

Hours = Annotated[float | None, Query(gt=0, le=24 * 366, description="recent window in hours (default 24)")]


def mount_monitor(app: FastAPI, settings: Settings, config: DashboardSettings | None = None,
                  auth: OperatorAuth | None = None, security: SecuritySettings | None = None,
                  guard: GuardState | None = None) -> OperatorAuth:
    """Add ``/monitor`` and ``/api/v1/monitor/*`` to ``app``; returns the password check in use.

    The routes go in front of any mount already at ``/`` (Gradio), so they are reached first.
    Sessions and failure counts live in ``guard`` (this process's memory, or the Redis the replicas
    share: web/guard/shared.py).
    """
    auth = auth or OperatorAuth.for_settings(settings)
    security = security or SecuritySettings()
    guard = guard or guard_state(security)
    access = OperatorAccess(auth=auth, sessions=guard.sessions, failures=guard.failures, keys=guard.keys,
                            session_seconds=security.session_s)
    cache = SnapshotCache(settings, config or DashboardSettings())
    before = len(app.router.routes)
    app.include_router(page_router(access, cache))
    app.include_router(api_router(access, cache))
    added = app.router.routes[before:]
    app.router.routes[:] = [*added, *app.router.routes[:before]]
    app.state.monitor_auth = auth
    app.state.monitor_access = access
    app.state.monitor_cache = cache
    return auth


def page_router(access: OperatorAccess, cache: SnapshotCache) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/monitor", response_class=HTMLResponse)
    def dashboard(request: Request, hours: Hours = None) -> Response:
        verdict = access.check(request)
        if verdict.locked:
            return locked_out(verdict.locked, html=True)
        if not verdict.allowed:
            return HTMLResponse(login_page(), status_code=401, headers=PRIVATE)
        snap = cache.get(hours)
        return HTMLResponse(dashboard_page(snap), headers=PRIVATE)

    @router.get("/monitor/login", response_class=HTMLResponse)
    def login_form() -> Response:
        return HTMLResponse(login_page(), headers=PRIVATE)

    @router.post("/monitor/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        return await access.login(request, (form.get("password") or [""])[0])

    @router.post("/monitor/logout")
    def logout(request: Request) -> Response:
        return access.logout(request)

    @router.get("/monitor/assets/plotly.min.js")
    def plotly_js() -> Response:
        return FileResponse(PLOTLY_BUNDLE, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    return router


def api_router(access: OperatorAccess, cache: SnapshotCache) -> APIRouter:
    """``/api/v1/monitor/*``: the dashboard's numbers as JSON, for programs and alerts."""

    def operator(request: Request) -> None:
        verdict = access.check(request)
        if verdict.locked:
            detail, headers = lockout(verdict.locked)
            raise HTTPException(401, detail, headers=headers)
        if not verdict.allowed:
            raise HTTPException(401, "the monitoring API needs the operator password (HTTP Basic, "
                                     "user admin)", headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})

    router = APIRouter(prefix="/api/v1/monitor", tags=["monitoring"], dependencies=[Depends(operator)],
                       responses=API_ERRORS)

    def view(name: str, hours: float | None) -> dict[str, Any]:
        return getattr(cache.get(hours), f"{name}_json")()

    @router.get("/summary", summary="Model, prediction counts, headline metrics, drift and synthesizer")
    def summary(hours: Hours = None) -> dict[str, Any]:
        return view("summary", hours)

    @router.get("/model", summary="The champion's model card")
    def model() -> dict[str, Any]:
        return view("model", None)

    @router.get("/performance", summary="Metrics over all predictions, the window, and per day")
    def performance(hours: Hours = None) -> dict[str, Any]:
        return view("performance", hours)

    @router.get("/confusion", summary="Confusion matrices: all predictions and the window")
    def confusion(hours: Hours = None) -> dict[str, Any]:
        return view("confusion", hours)

    @router.get("/drift", summary="Drift of each feature and the probability, training data vs window")
    def drift(hours: Hours = None) -> dict[str, Any]:
        return view("drift", hours)

    @router.get("/volume", summary="Rows of heart per day and source; prediction counts")
    def volume() -> dict[str, Any]:
        return view("volume", None)

    @router.get("/recent", summary="Latest Kaggle and synthetic predictions (user rows only counted)")
    def recent() -> dict[str, Any]:
        return view("recent", None)

    @router.get("/shap", summary="Mean |SHAP| per question over recent rows")
    def shap(hours: Hours = None) -> dict[str, Any]:
        return view("shap", hours)

    @router.get("/synthesizer", summary="The synthesizer in use and its quality")
    def synthesizer() -> dict[str, Any]:
        return view("synthesizer", None)

    return router
