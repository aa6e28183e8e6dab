"""Property tests of the request schema against the real server: invalid bodies, whatever their
shape, get a 422 naming a field (never a 5xx), and none of them stores a row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, FEATURES, Feature
from support.web import stored_submissions

EXAMPLES = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def nothing_stored(web_home: Settings, web_client: httpx.Client) -> Iterator[None]:
    """Checked once the module is done: every invalid body above left heart_user as it was."""
    before = len(stored_submissions(web_home))
    yield
    assert len(stored_submissions(web_home)) == before


# ------------------------------------------------------------------------------ strategies
def valid_answer(f: Feature) -> st.SearchStrategy[Any]:
    if f.is_numeric:
        numbers = (st.integers(int(f.low), int(f.high)).map(float) if f.whole
                   else st.floats(f.low, f.high, allow_nan=False))
        return st.none() | numbers
    return st.none() | st.sampled_from(f.values)


def invalid_answer(f: Feature) -> st.SearchStrategy[Any]:
    """Out of range, not finite, fractional days, wrong JSON type, or an answer not in the spec."""
    wrong_type = st.booleans() | st.lists(st.integers(), max_size=2) | st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=1)
    if f.is_numeric:
        outside = (st.floats(max_value=f.low, exclude_max=True, allow_nan=False, allow_infinity=False)
                   | st.floats(min_value=f.high, exclude_min=True, allow_nan=False,
                               allow_infinity=False))
        strange = st.sampled_from([float("nan"), float("inf"), float("-inf")])
        numeric_text = st.floats(f.low, f.high, allow_nan=False).map(str)
        fractional = (st.integers(int(f.low), int(f.high) - 1).map(lambda n: n + 0.5) if f.whole
                      else st.nothing())
        return outside | strange | numeric_text | wrong_type | st.text(max_size=8) | fractional
    not_allowed = st.text(max_size=12).filter(lambda s: s not in f.values)
    return not_allowed | st.integers() | st.floats(allow_nan=False) | wrong_type


answers = st.fixed_dictionaries({f.name: valid_answer(f) for f in FEATURES})


@st.composite
def invalid_answers(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """Valid answers with 1-3 of them spoilt (or an unknown question added); returns the fields."""
    body = draw(answers)
    spoilt = draw(st.lists(st.sampled_from(FEATURES), min_size=1, max_size=3, unique_by=lambda f: f.name))
    for f in spoilt:
        body[f.name] = draw(invalid_answer(f))
    fields = {f.name for f in spoilt}
    if draw(st.booleans()):
        extra = draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in FEATURE_NAMES))
        body[extra] = draw(st.integers())
        fields.add(extra)
    return body, fields


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children,
                                                                       max_size=3),
    max_leaves=10,
)


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    # json.dumps writes NaN/Infinity as the literals Python's JSON reader accepts: those must be refused too.
    return client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def named_fields(response: httpx.Response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


# ------------------------------------------------------------------------------ properties
@EXAMPLES
@given(case=invalid_answers())
def test_invalid_answers_are_422_naming_the_field(web_client: httpx.Client, nothing_stored: None,
                                                  case: tuple[dict[str, Any], set[str]]) -> None:
    body, fields = case
    response = post(web_client, "/api/v1/predict", body)
    assert response.status_code == 422, response.text
    assert named_fields(response) <= fields and named_fields(response)


@EXAMPLES
@given(case=invalid_answers(), heart_disease=st.booleans())
def test_invalid_submissions_store_nothing(web_client: httpx.Client, nothing_stored: None,
                                           case: tuple[dict[str, Any], set[str]],
                                           heart_disease: bool) -> None:
    body, fields = case
    response = post(web_client, "/api/v1/submissions",
                    {**body, "heart_disease": heart_disease, "consent": True})
    assert response.status_code == 422, response.text
    assert named_fields(response) <= fields


@EXAMPLES
@given(body=answers, heart_disease=st.none() | st.booleans() | st.text(max_size=5) | st.integers(),
       consent=st.none() | st.booleans() | st.text(max_size=5) | st.integers())
def test_without_consent_nothing_is_stored(web_client: httpx.Client, nothing_stored: None,
                                           body: dict[str, Any], heart_disease: Any, consent: Any) -> None:
    if consent is True and isinstance(heart_disease, bool):
        consent = False  # the one valid combination is tested elsewhere
    extra = {k: v for k, v in (("heart_disease", heart_disease), ("consent", consent)) if v is not None}
    response = post(web_client, "/api/v1/submissions", {**body, **extra})
    assert response.status_code == 422, response.text
    assert named_fields(response) & {"heart_disease", "consent"}


@EXAMPLES
@given(body=json_values)
def test_any_json_gets_a_client_error_not_a_crash(web_client: httpx.Client, nothing_stored: None,
                                                  body: Any) -> None:
    # Random JSON can be a valid prediction request ({} is: all Unknown); it is no valid submission
    # unless it says `consent`, which random keys practically never do (skipped if they do).
    response = post(web_client, "/api/v1/predict", body)
    assert response.status_code in {200, 422}, response.text
    if not (isinstance(body, dict) and "consent" in body):
        response = post(web_client, "/api/v1/submissions", body)
        assert response.status_code == 422, response.text
