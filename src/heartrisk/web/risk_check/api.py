"""The JSON API under ``/api/v1``: predict, share an outcome, health and the model in use.

A submission is checked in the thread pool (a refused one is answered 422 and never queued), then
waits on the loop, holding no thread, for the submission writer's commit that holds it
(risk_check/submission_writer.py: submissions that arrive together share one Delta commit). The other routes
only read memory and run on the loop; a prediction goes to the pool only when it is dear (see
:func:`predict`).
Every error body is an :class:`~heartrisk.web.risk_check.schemas.ErrorBody`: one readable line plus the fields
at fault, so a program and a person can both tell what to fix.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException

from heartrisk.monitoring.served_profile import ServingProfile
from heartrisk.validation import ValidationError
from heartrisk.web.guard.rate_limits import SubmissionLimit, retry_seconds, too_many_detail
from heartrisk.web.risk_check.model_cache import ModelCache, ModelUnavailableError
from heartrisk.web.risk_check.risk import score
from heartrisk.web.risk_check.schemas import (
    Answers,
    ErrorBody,
    ErrorField,
    Health,
    ModelInfo,
    Prediction,
    SubmissionCreated,
    SubmissionRequest,
    answers_dict,
)
from heartrisk.web.risk_check.scorer import Scorer
from heartrisk.web.risk_check.strict_json import StrictJSONRoute
from heartrisk.web.risk_check.submission_writer import SubmissionWriter, WriterStoppedError

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX, tags=["risk check"], route_class=StrictJSONRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body cannot be parsed (e.g. not UTF-8)"},
    413: {"model": ErrorBody, "description": "the request body is too large"},
    422: {"model": ErrorBody, "description": "an answer is invalid; `errors` names the field(s)"},
}
_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "too many submissions from this client; `Retry-After` "
                                             "says when to send it again (nothing was stored)"},
}
_NO_MODEL: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "no model is available yet; `detail` says why"},
}
_STOPPING: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "the server is stopping; nothing was stored, send it again"},
}
#: Seconds a client is told to wait before re-sending a submission refused while the server stops.
RETRY_AFTER_STOPPING_S = 60


async def models(request: Request) -> ModelCache:
    """The app's model cache (async: a sync dependency would cost a trip to the thread pool)."""
    return request.app.state.models


async def submission_writer(request: Request) -> SubmissionWriter:
    return request.app.state.submissions


async def served_model(cache: Annotated[ModelCache, Depends(models)]) -> Scorer:
    """The champion in use; 503 (via :class:`ModelUnavailableError`) until there is one."""
    return cache.get()


@router.post("/predict", response_model=Prediction, responses={**_ERRORS, **_NO_MODEL},
             summary="A person's risk, why, and what was assumed for the Unknowns")
async def predict(
    body: Answers,  # type: ignore[valid-type]
    request: Request,
    explain: Annotated[bool, Query(description="include per-question SHAP contributions")] = True,
    context: Annotated[bool, Query(description="include the risk in context (picture, healthy peer, "
                                               "percentile, risk age, what-if, range)")] = True,
) -> Response:
    # A cheap answer (a compiled model: about a millisecond with the context) costs less than the
    # hop to a worker thread (scorer.INLINE_MS); a dear one (a forest explained by its own code)
    # runs in the thread pool so it never holds up the event loop. No more of them run at once
    # than there are cores: eight threads passing the GIL among themselves cost CPU and stretch
    # every request (bench/serve.py); the others wait their turn on the loop.
    # The app's parts are read from its state here rather than as FastAPI dependencies: the three
    # dependencies cost about 0.03 ms of this route's ~1.2 ms of server CPU (docs/web.md#speed).
    state = request.app.state
    row = answers_dict(body)
    inline = answer_inline(state, row, explain, context)
    if inline is not None:
        return Response(inline, media_type="application/json")
    slots: anyio.CapacityLimiter | None = getattr(state, "scoring_slots", None)
    result = (await anyio.to_thread.run_sync(score, state.models.get(), [row], explain, context,
                                             getattr(state, "profile", None), limiter=slots))[0]
    return Response(result.model_dump_json(), media_type="application/json")


def answer_inline(state: State, row: dict[str, Any], explain: bool, context: bool) -> str | None:
    """The JSON of a prediction cheap enough for the event loop, or None for the thread pool.

    The one place the inline answer is made: the route and its fast path (fast_path.py) both call it.
    Raises :class:`ModelUnavailableError` while there is no model. The response is built from our own
    model, so it is serialised directly instead of being validated once more."""
    scorer = state.models.get()
    if not scorer.cheap(explain, context):
        return None
    profile: ServingProfile | None = getattr(state, "profile", None)
    return score(scorer, [row], explain, context, profile)[0].model_dump_json()


@router.post("/submissions", response_model=SubmissionCreated, status_code=status.HTTP_201_CREATED,
             responses={**_ERRORS, **_LIMITED, **_STOPPING},
             summary="Share answers and a known diagnosis (consent required)")
async def create_submission(
    body: SubmissionRequest,  # type: ignore[valid-type]
    writer: Annotated[SubmissionWriter, Depends(submission_writer)],
    request: Request,
) -> Response:
    # The schema already refused a body without `consent: true`; nothing reaches the store without it.
    # The client's budget is counted here, where a row is stored (a body the schema refused never
    # got this far, so it costs nothing); a slot is given back when the store refuses the row or the
    # server is stopping. Checked before it is queued (ValidationError -> 422, nothing stored);
    # answered after the commit.
    limit: SubmissionLimit = request.app.state.submission_limit
    address = request.client.host if request.client else None
    wait = limit.take(address)
    if wait:
        response = _error(429, too_many_detail("submissions", wait))
        response.headers["retry-after"] = str(retry_seconds(wait))
        return response
    try:
        submission_id = await writer.submit(answers_dict(body), body.heart_disease)
    except BaseException:
        limit.give_back(address)
        raise
    created = SubmissionCreated(submission_id=submission_id)
    return Response(created.model_dump_json(), status_code=status.HTTP_201_CREATED,
                    media_type="application/json")


@router.get("/health", response_model=Health, summary="Is the server up, and is there a model")
async def health(cache: Annotated[ModelCache, Depends(models)]) -> Health:
    version = cache.version
    if version is None:
        return Health(status="no model", model_version=None, detail=cache.reason)
    return Health(status="ok", model_version=version)


@router.get("/model", response_model=ModelInfo, responses=_NO_MODEL,
            summary="The model in use: version, when it was trained, its test metrics")
async def model_info(scorer: Annotated[Scorer, Depends(served_model)]) -> ModelInfo:
    model = scorer.loaded
    return ModelInfo(
        version=model.version, family=model.family, trained_at=model.trained_at,
        threshold=model.threshold, base_rate=model.base_rate, metrics=model.metrics,
        feature_group=model.feature_group, feature_group_version=model.feature_group_version,
    )


# ------------------------------------------------------------------------------------ errors
def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "bmi")`` -> ``bmi``; a problem with the body itself -> ``body``."""
    parts = [str(p) for p in loc[1:] if not isinstance(p, int)]
    return ".".join(parts) or "body"


def _error(status_code: int, detail: str, errors: list[ErrorField] | None = None) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status_code)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":  # the parser's own line (web/risk_check/strict_json.py)
            message = str(e.get("ctx", {}).get("error", "not valid JSON"))
        else:
            message = str(e.get("msg", "is invalid")).removeprefix("Value error, ")
        errors.append(ErrorField(field=_field(e.get("loc", ())), message=message))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
    return _error(422, detail, errors)


async def _store_refused(request: Request, exc: ValidationError) -> JSONResponse:
    errors = [ErrorField(field=p.column, message=f"{p.value!r} {p.reason}") for p in exc.problems]
    return _error(422, str(exc), errors)


async def _no_model(request: Request, exc: ModelUnavailableError) -> JSONResponse:
    return _error(503, f"no model available: {exc}")


async def _stopping(request: Request, exc: WriterStoppedError) -> JSONResponse:
    response = _error(503, str(exc))
    response.headers["retry-after"] = str(RETRY_AFTER_STOPPING_S)
    return response


def too_large(max_bytes: int) -> JSONResponse:
    return _error(413, f"request body too large: at most {max_bytes:,} bytes are accepted",
                  [ErrorField(field="body", message="too large")])


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 413:
        return too_large(request.app.state.web.max_body_bytes)
    response = _error(exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """JSON error bodies naming the field for every failure the API can meet."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ValidationError, _store_refused)
    app.add_exception_handler(ModelUnavailableError, _no_model)
    app.add_exception_handler(WriterStoppedError, _stopping)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
