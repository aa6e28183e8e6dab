"""Fuzzing the API from its OpenAPI spec (schemathesis): thousands of generated requests, valid and
invalid, against the real server; no 5xx, and the only rows stored are those of accepted submissions.

tests/test_api_properties.py holds hand-written strategies for the answers; this drives every
operation of /openapi.json (the monitoring API too, with the operator password) in both of
schemathesis' modes: positive (requests that fit the schema) and negative (requests that do not).
"""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from heartrisk.config import Settings
from heartrisk.web.app import WebSettings
from heartrisk.web.guard import auth
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import PASSWORD
from support.web import copy_home, stored_submissions

pytestmark = pytest.mark.reliability

#: Generated requests per operation and mode. Accepted submissions are few: each is a Delta commit.
BUDGET: dict[str, dict[str, int]] = {
    "POST /api/v1/predict": {"positive": 1000, "negative": 1000},
    "POST /api/v1/submissions": {"positive": 60, "negative": 900},
}
DEFAULT_BUDGET = {"positive": 10, "negative": 10}
MINIMUM_REQUESTS = 3000


def drive(strategy: st.SearchStrategy[Any], examples: int, each: Callable[[Any], None]) -> None:
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        each(case)

    with contextlib.suppress(Unsatisfiable):  # an operation without parameters has no negative mode
        run()


def test_thousands_of_generated_requests_no_5xx_nothing_stored_when_refused(
        trained_home: Settings, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    home = copy_home(trained_home, tmp_path_factory.mktemp("fuzz") / "home")
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    operator = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    web = WebSettings(port=0, security=SecuritySettings(submission_limit=100_000))
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    accepted: set[str] = set()
    failures: list[str] = []
    with BackgroundServer(home, web) as server:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10  # predict, submissions, health, model and the monitoring API

        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                def each(case: Any, label: str = label) -> None:
                    response = case.call(base_url=server.url, headers=operator, timeout=120)
                    sent[label] += 1
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        failures.append(f"{label} -> {response.status_code}: {case.body!r:.300} "
                                        f"{case.query!r:.200}")
                    if label == "POST /api/v1/submissions" and response.status_code == 201:
                        accepted.add(response.json()["submission_id"])

                drive(operation.as_strategy(generation_mode=mode),
                      BUDGET.get(label, DEFAULT_BUDGET)[mode.value], each)

    total = sum(sent.values())
    print(f"\n{total} generated requests: {dict(sent)}; statuses {dict(sorted(statuses.items()))}")
    assert failures == []
    assert total >= MINIMUM_REQUESTS
    stored = stored_submissions(home)
    assert set(stored["submission_id"]) == accepted and len(stored) == len(accepted)
    assert accepted  # the positive mode did store some: the check above had something to hold
