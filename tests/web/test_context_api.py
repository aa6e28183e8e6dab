"""The risk in context through the JSON API (issue 17): the real app on 127.0.0.1, a quick model.

The API's context equals the model layer's (computed through the model's own pipeline rather than
the server's compiled scorer), can be left out, and every new field is described in the OpenAPI spec.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.model.card import pipeline_margins
from heartrisk.model.context import contexts
from heartrisk.model.registry import load_model
from support.web import ANSWERS


def test_context_matches_the_model_layer(web_client: httpx.Client, web_home: Settings) -> None:
    body = web_client.post("/api/v1/predict", json=ANSWERS).json()
    served = body["context"]
    model = load_model(web_home, "1")
    expected = contexts([ANSWERS], pipeline_margins(model.model), model.model.calibration,
                        model.imputation(), model.reference)[0].model_dump(mode="json")
    assert served["probability"] == pytest.approx(body["probability"], abs=1e-9)
    for part in ("icons", "percentile"):
        assert served[part] == expected[part], part
    assert served["healthy_peer"]["probability"] == pytest.approx(expected["healthy_peer"]["probability"])
    assert served["range"]["low"] == pytest.approx(expected["range"]["low"])
    assert served["range"]["high"] == pytest.approx(expected["range"]["high"])
    assert [w["feature"] for w in served["what_if"]] == [w["feature"] for w in expected["what_if"]]
    assert served["risk_age"]["years"] == pytest.approx(expected["risk_age"]["years"])


def test_context_can_be_left_out(web_client: httpx.Client) -> None:
    body = web_client.post("/api/v1/predict", params={"context": "false"}, json=ANSWERS).json()
    assert body["context"] is None and body["probability"] > 0


def _described(spec: dict[str, Any], name: str) -> list[str]:
    """Properties of schema ``name`` (and the schemas it refers to) without a description."""
    schemas = spec["components"]["schemas"]
    missing, seen, todo = [], set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for prop, schema in schemas[current].get("properties", {}).items():
            refs = [s["$ref"].rsplit("/", 1)[1] for s in (schema, *schema.get("anyOf", []),
                                                          schema.get("items", {})) if "$ref" in s]
            if refs:
                todo.extend(refs)
                if "description" not in schema and "description" not in schemas[refs[0]]:
                    missing.append(f"{current}.{prop}")
            elif "description" not in schema:
                missing.append(f"{current}.{prop}")
    return missing


def test_every_context_field_is_described_in_openapi(web_client: httpx.Client) -> None:
    spec = web_client.get("/openapi.json").json()
    assert _described(spec, "RiskContext") == []
    assert "not a 10-year risk" in spec["components"]["schemas"]["Prediction"]["properties"][
        "probability"]["description"]
    assert "not your chance of a heart attack in the next 10 years" in spec["info"]["description"]
