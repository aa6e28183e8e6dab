"""The web server's app factory: the JSON API, the operator dashboard and the risk-check form.

``create_app(settings)`` builds one FastAPI app from settings (a test builds its own on a temporary
home). Order matters: the Gradio form is mounted at ``/`` and answers every path not routed before
it, so the API (``/api/v1``), the docs (``/docs``) and the dashboard (``/monitor``) come first.
Cross-cutting concerns (body size: web/guard/limits.py; Host checks, security headers and generic 500s:
web/guard/security.py) are app-wide middleware, so they cover the API, the dashboard and the form alike.
The per-client state (who a client is, its submission budget) is made once here and handed to
what counts it: the API's route, the form's share function, the dashboard's login
(web/guard/operator_access.py) and the guard in front of Gradio (web/guard/gradio_routes.py), which opens only
the routes the page uses.
Three background threads live as long as the app (its lifespan starts and stops them): the model cache
following the champion, the submission writer that commits shared outcomes in batches, and the
serving profile's writer (counts of what was asked, monitoring/served_profile.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from heartrisk import __version__
from heartrisk.config import Settings, settings_from_env
from heartrisk.model.card import SCOPE
from heartrisk.monitoring.served_profile import FLUSH_SECONDS, ServingProfile, replica_from_env
from heartrisk.store.probe import require_conditional_writes
from heartrisk.web.guard.limits import BodySizeLimit
from heartrisk.web.guard.log_limit import RepeatLimit
from heartrisk.web.guard.rate_limits import SubmissionLimit
from heartrisk.web.guard.route_methods import HeadAsGet, RouteMethods
from heartrisk.web.guard.security import SecuritySettings, install_security
from heartrisk.web.guard.shared import guard_state
from heartrisk.web.risk_check import api
from heartrisk.web.risk_check.fast_path import PredictFastPath
from heartrisk.web.risk_check.model_cache import ModelCache
from heartrisk.web.risk_check.submission_writer import DEFAULT_MAX_BATCH, SubmissionWriter


class _FastPredict(BaseModel):
    on: bool = True


def fast_predict_from_env() -> bool:
    """``HEARTRISK_FAST_PREDICT`` read as every setting is: a bool as pydantic reads one (``0``,
    ``false``, ``off``, …); anything else fails at start naming the variable."""
    return settings_from_env(_FastPredict, {"on": "HEARTRISK_FAST_PREDICT"}, "web settings").on


class WebSettings(BaseModel):
    """How the server runs; defaults suit a laptop with 2 cores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=0, le=65535)
    poll_seconds: float = Field(default=5.0, ge=0,
                                description="how often to look for a new champion (0: never)")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024,
                                description="larger request bodies are refused with 413")
    form_concurrency: int = Field(default=8, ge=1,
                                  description="form events (risk checks, shares) run at once")
    form_queue_size: int = Field(default=256, ge=1,
                                 description="form events waiting beyond this are turned away")
    submission_batch: int = Field(default=DEFAULT_MAX_BATCH, ge=1,
                                  description="most submissions written in one commit (submissions "
                                              "arriving during a commit are written together)")
    replica: str = Field(default_factory=replica_from_env, min_length=1,
                         description="this server's name in the serving profile (HEARTRISK_REPLICA; "
                                     "default: the machine's name)")
    profile_flush_seconds: float = Field(default=FLUSH_SECONDS, ge=0, le=3600,
                                         description="how often the serving profile is written (a "
                                                     "SIGKILL loses at most this much of it)")
    fast_predict: bool = Field(default_factory=fast_predict_from_env,
                               description="answer a plain POST /api/v1/predict ahead of FastAPI's "
                                           "routing (web/risk_check/fast_path.py; "
                                           "HEARTRISK_FAST_PREDICT=0: off)")
    security: SecuritySettings = Field(default_factory=SecuritySettings.from_env,
                                       description="limits and proxies (web/guard/security.py; "
                                                   "HEARTRISK_* variables)")


def create_app(settings: Settings, web: WebSettings | None = None,
               models: ModelCache | None = None, submissions: SubmissionWriter | None = None,
               profile: ServingProfile | None = None) -> FastAPI:
    """The whole web app for ``settings``; nothing starts until the ASGI server runs it."""
    web = web or WebSettings()
    models = models or ModelCache(settings, poll_seconds=web.poll_seconds)
    submissions = submissions or SubmissionWriter(settings, max_batch=web.submission_batch)
    profile = profile or ServingProfile(settings, web.replica, web.profile_flush_seconds)
    log_limit = RepeatLimit()  # repeated errors from requests: a few a minute (web/guard/log_limit.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A store that ignores conditional writes would lose acknowledged submissions: refuse to start.
        await run_in_threadpool(require_conditional_writes, settings.store_root, settings.single_writer)
        models.start()
        submissions.start()
        profile.start()
        log_limit.install()
        try:
            yield
        finally:
            log_limit.remove()
            # The server has stopped taking requests: write what is queued, refuse anything later (503).
            await run_in_threadpool(submissions.stop)
            await run_in_threadpool(profile.stop)  # the counts since the last write
            models.stop()

    app = FastAPI(
        title="heartrisk", version=__version__, lifespan=lifespan, docs_url="/docs",
        description="Heart-disease risk from 17 survey answers, with explanations and the risk in "
                    "context; consented outcome sharing. The web form is at `/`, the model card at "
                    "`/model`.\n\n" + SCOPE,
    )
    app.state.settings = settings
    app.state.web = web
    app.state.models = models
    app.state.submissions = submissions
    app.state.profile = profile
    app.state.scoring_slots = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
    guard = guard_state(web.security)  # memory, or the Redis every replica shares
    keys = guard.keys
    limit = SubmissionLimit(keys, guard.submissions)
    app.state.client_keys = keys
    app.state.submission_limit = limit

    if web.fast_predict:  # innermost: inside every guard below
        app.add_middleware(PredictFastPath, state=app.state)
    route_methods = RouteMethods(app.router)
    app.state.route_methods = route_methods
    app.add_middleware(HeadAsGet, methods=route_methods)  # HEAD wherever an app route takes GET
    # No origin may use the app across sites. Declaring it also makes Gradio leave CORS to the app:
    # on its own it answered any localhost origin with `Access-Control-Allow-Credentials: true`.
    app.add_middleware(CORSMiddleware, allow_origins=[])
    app.add_middleware(BodySizeLimit, max_bytes=web.max_body_bytes)
    install_security(app, web.security, web.host)  # outermost: Host, headers, generic 500s
    api.install_error_handlers(app)
    app.include_router(api.router)
    from heartrisk.web.risk_check.model_card import router as model_card  # public, before the form

    app.include_router(model_card)
    from heartrisk.web.dashboard.routes import mount_monitor  # the operator dashboard, before the form

    mount_monitor(app, settings, security=web.security, guard=guard)
    mount_form(app, settings, models, submissions, web, limit, profile)  # last: every path not routed
    return app


def mount_form(app: FastAPI, settings: Settings, models: ModelCache, submissions: SubmissionWriter,
               web: WebSettings, limit: SubmissionLimit, profile: ServingProfile | None = None) -> None:
    """Mount the Gradio risk check at ``/`` with deliberate concurrency, nothing recorded, and only
    the routes the page uses open (web/guard/gradio_routes.py)."""
    import gradio as gr

    from heartrisk.web.guard.gradio_routes import GradioGuard
    from heartrisk.web.guard.route_methods import MethodNotAllowed
    from heartrisk.web.risk_check.form import CSS, build_form

    form = build_form(settings, models, submissions, limit, profile)
    # Gradio runs 1 event at a time unless told otherwise; risk checks are short and CPU-light, so
    # several at once keep the page responsive under load. The queue bound sheds load politely.
    # api_open=False: Gradio refuses /run and /api for queued events (the guard closes them anyway).
    form.queue(default_concurrency_limit=web.form_concurrency, max_size=web.form_queue_size,
               api_open=False)
    gr.mount_gradio_app(
        app, form, path="/", css=CSS, ssr_mode=False, run_history=False,
        footer_links=["gradio"], show_error=False, enable_monitoring=False,  # no internals to the page
        max_file_size=web.max_body_bytes,
    )
    mounted = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "")
    mounted.app.add_middleware(GradioGuard, blocks=form, keys=limit.keys, limit=limit,
                               queue_per_client=web.security.queue_per_client)
    mounted.app.add_middleware(MethodNotAllowed, methods=app.state.route_methods)  # outside the guard
