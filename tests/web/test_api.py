"""The JSON API against the real app under uvicorn on 127.0.0.1, with a quick model in a temp home."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, FEATURES
from heartrisk.model.registry import load_model
from support.web import ANSWERS, UNKNOWNS, stored_submissions


def test_health_and_model_name_the_champion(web_client: httpx.Client) -> None:
    assert web_client.get("/api/v1/health").json() == {"status": "ok", "model_version": "1", "detail": None}
    info = web_client.get("/api/v1/model").json()
    assert info["version"] == "1"
    assert info["feature_group"] == "heart_v1"
    assert 0.5 < info["metrics"]["roc_auc"] <= 1
    assert 0 < info["base_rate"] < 0.5
    assert info["trained_at"].startswith("20")


def test_predict_with_unknowns_matches_the_registry_model(web_client: httpx.Client,
                                                          web_home: Settings) -> None:
    response = web_client.post("/api/v1/predict", json=ANSWERS)
    assert response.status_code == 200, response.text
    body = response.json()
    reference = load_model(web_home, "1")
    frame = pd.DataFrame([ANSWERS])
    assert body["probability"] == pytest.approx(float(reference.predict_proba(frame)[0]), abs=1e-9)
    assert body["prediction"] == (body["probability"] >= body["threshold"])
    assert body["model_version"] == "1"
    ratio = body["probability"] / body["base_rate"]
    assert body["risk_band"] == ("lower" if ratio < 0.67 else "average" if ratio < 1.5
                                 else "higher" if ratio < 3 else "much higher")
    # Explanations: one per question, adding up to the risk, equal to the model's own explanation.
    contributions = body["contributions"]
    assert list(contributions) == list(FEATURE_NAMES)
    expected = reference.explain(frame).iloc[0]
    assert np.allclose([contributions[n] for n in FEATURE_NAMES], expected.to_numpy(), atol=1e-9)
    logit = math.log(body["probability"] / (1 - body["probability"]))
    assert body["base_value"] + sum(contributions.values()) == pytest.approx(logit, abs=1e-6)
    factors = body["factors"]
    assert [abs(f["contribution"]) for f in factors] == sorted((abs(v) for v in contributions.values()),
                                                               reverse=True)
    assert {f["feature"]: f["answer"] for f in factors} == ANSWERS
    # What was assumed for the three Unknowns: the model's own imputation, nothing else.
    assert sorted(body["imputed"]) == UNKNOWNS
    assert body["imputed"] == {k: reference.imputation()[k] for k in UNKNOWNS}


def test_predict_without_explanations(web_client: httpx.Client) -> None:
    full = web_client.post("/api/v1/predict", json=ANSWERS).json()
    lean = web_client.post("/api/v1/predict", params={"explain": "false"}, json=ANSWERS).json()
    assert lean["probability"] == full["probability"]
    assert lean["contributions"] is None and lean["factors"] is None
    assert lean["imputed"] == full["imputed"]


def test_all_unknown_is_a_valid_question(web_client: httpx.Client) -> None:
    body = web_client.post("/api/v1/predict", json={}).json()
    assert 0 < body["probability"] < 1
    assert sorted(body["imputed"]) == sorted(FEATURE_NAMES)
    assert web_client.post("/api/v1/predict", json=dict.fromkeys(FEATURE_NAMES)).json() == body


def test_answers_move_the_risk_the_expected_way(web_client: httpx.Client) -> None:
    """Behavioural check through the API: a stroke and old age do not lower anyone's risk."""
    base = {**ANSWERS, "stroke": "No", "age_category": "25-29"}
    risks = [web_client.post("/api/v1/predict", json={**base, **change}).json()["probability"]
             for change in ({}, {"stroke": "Yes"}, {"age_category": "80 or older"})]
    assert risks[1] >= risks[0] and risks[2] >= risks[0]


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"bmi": 5}, "bmi", "greater than or equal to 10"),
    ({"bmi": 101.5}, "bmi", "less than or equal to 100"),
    ({"bmi": "31"}, "bmi", "valid number"),
    ({"bmi": True}, "bmi", "valid number"),
    ({"physical_health": 2.5}, "physical_health", "whole number"),
    ({"sleep_time": 0}, "sleep_time", "greater than or equal to 1"),
    ({"sex": "male"}, "sex", "'Female' or 'Male'"),
    ({"age_category": 70}, "age_category", "'18-24'"),
    ({"smoking": True}, "smoking", "'No' or 'Yes'"),
    ({"bmi_typo": 20}, "bmi_typo", "Extra inputs"),
])
def test_invalid_answer_is_422_naming_the_field(web_client: httpx.Client, change: dict[str, Any],
                                                field: str, words: str) -> None:
    response = web_client.post("/api/v1/predict", json={**ANSWERS, **change})
    assert response.status_code == 422
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert words in body["errors"][0]["message"]
    assert body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"bmi"', b"null", b""])
def test_a_body_that_is_not_an_object_is_422(web_client: httpx.Client, raw: bytes) -> None:
    response = web_client.post("/api/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


def test_consented_submission_is_stored_as_answered(web_client: httpx.Client, web_home: Settings) -> None:
    before = len(stored_submissions(web_home))
    body = {**ANSWERS, "heart_disease": True, "consent": True}
    response = web_client.post("/api/v1/submissions", json=body)
    assert response.status_code == 201, response.text
    submission_id = response.json()["submission_id"]
    stored = stored_submissions(web_home)
    assert len(stored) == before + 1
    row = stored.set_index("submission_id").loc[submission_id]
    for f in FEATURES:
        if ANSWERS[f.name] is None:
            assert pd.isna(row[f.name]), f.name  # Unknown stays null: imputation is the model's job
        else:
            assert row[f.name] == ANSWERS[f.name], f.name
    assert bool(row["heart_disease"]) is True
    # Nothing that could identify the person: only the answers, the outcome and a random key.
    assert set(stored.columns) == {"submission_id", "submitted_at", *FEATURE_NAMES, "heart_disease"}
    assert len(submission_id) == 36 and submission_id[14] == "4"  # a UUID4


@pytest.mark.parametrize(("extra", "field"), [
    ({"heart_disease": True}, "consent"),
    ({"heart_disease": True, "consent": False}, "consent"),
    ({"heart_disease": True, "consent": "yes"}, "consent"),
    ({"consent": True}, "heart_disease"),
    ({"heart_disease": "Yes", "consent": True}, "heart_disease"),
    ({"heart_disease": False, "consent": True, "bmi": 500}, "bmi"),
])
def test_no_consent_or_bad_submission_stores_nothing(web_client: httpx.Client, web_home: Settings,
                                                     extra: dict[str, Any], field: str) -> None:
    before = len(stored_submissions(web_home))
    response = web_client.post("/api/v1/submissions", json={**ANSWERS, **extra})
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert len(stored_submissions(web_home)) == before


def test_oversized_bodies_are_refused(web_client: httpx.Client, web_home: Settings) -> None:
    before = len(stored_submissions(web_home))
    padding = " " * (128 * 1024)
    body = ('{"heart_disease": true, "consent": true, "bmi": 30' + padding + "}").encode()
    declared = web_client.post("/api/v1/submissions", content=body,
                           headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "too large" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must count the bytes
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    streamed = web_client.post("/api/v1/submissions", content=chunks(),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert len(stored_submissions(web_home)) == before


def test_docs_list_the_api_and_the_form_is_served(web_client: httpx.Client) -> None:
    spec = web_client.get("/openapi.json").json()
    assert {"/api/v1/predict", "/api/v1/submissions", "/api/v1/health", "/api/v1/model"} <= set(spec["paths"])
    answers = spec["components"]["schemas"]["Answers"]["properties"]
    assert list(answers) == list(FEATURE_NAMES)
    assert answers["bmi"]["title"] == FEATURES[0].question
    assert web_client.get("/docs").status_code == 200
    page = web_client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "Heart-disease risk check" in page.text  # the page carries its own config
    assert web_client.get("/config").status_code == 404  # Gradio's /config: closed (guard)


@pytest.mark.parametrize("path", ["/api/v1/predict", "/api/v1/submissions"])
def test_a_key_given_twice_is_refused_naming_it(web_client: httpx.Client, web_home: Settings,
                                                path: str) -> None:
    """JSON leaves duplicate keys to the parser; Python keeps the last, a proxy or a log may keep the
    first. An answer given twice (a consent `false` then `true`) is ambiguous, so it is refused."""
    before = len(stored_submissions(web_home))
    body = '{"heart_disease": true, "consent": false, "smoking": "No", "consent": true, "bmi": 30}'
    response = web_client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "body", "message": "the key 'consent' appears twice"}]
    assert "consent" in response.json()["detail"]
    assert len(stored_submissions(web_home)) == before


def test_a_body_that_is_not_json_says_where_it_breaks(web_client: httpx.Client) -> None:
    response = web_client.post("/api/v1/predict", content='{"bmi": 30,, "smoking": "No"}',
                               headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"] == ("body: not valid JSON: Expecting property name enclosed in "
                                          "double quotes: line 1 column 12 (char 11)")
