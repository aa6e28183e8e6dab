"""Rate limits on shared outcomes, per client, on the API and the form; invalid requests cost nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.web.app import WebSettings
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import ANSWERS, copy_home, stored_submissions


def limited(home: Settings, limit: int) -> BackgroundServer:
    return BackgroundServer(home, WebSettings(port=0, security=SecuritySettings(submission_limit=limit)))


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    return copy_home(trained_home, tmp_path / "home")


def test_submissions_are_limited_per_client_and_invalid_ones_cost_nothing(home: Settings) -> None:
    body = {**ANSWERS, "heart_disease": True, "consent": True}
    with limited(home, 3) as server, httpx.Client(base_url=server.url) as client:
        invalid = [client.post("/api/v1/submissions", json={**body, "bmi": -1}) for _ in range(5)]
        assert [r.status_code for r in invalid] == [422] * 5
        answers = [client.post("/api/v1/submissions", json=body) for _ in range(5)]
        assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
        refused = answers[-1]
        assert "too many submissions" in refused.json()["detail"]
        assert 3500 < int(refused.headers["retry-after"]) <= 3600
        assert client.post("/api/v1/predict", json=ANSWERS).status_code == 200  # predictions unaffected
        other = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with other:
            assert other.post("/api/v1/submissions", json=body).status_code == 201  # another client
    assert len(stored_submissions(home)) == 4


def test_the_form_share_is_limited_too(home: Settings) -> None:
    with limited(home, 2) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        share = form_fn_index(server.app, "share")
        check = form_fn_index(server.app, "predict")
        results = [form_event(client, share, [*FORM_ANSWERS, "Yes", True], f"s{i}") for i in range(3)]
        assert [status for status, _ in results] == [200, 200, 429]
        assert all(done and done["success"] for _, done in results[:2])
        status, done = form_event(client, check, FORM_ANSWERS, "risk")  # a risk check is not limited
        assert status == 200 and done and done["success"]
        huge = client.post("/gradio_api/queue/join", content=b'{"data": ["' + b"x" * 300_000 + b'"]}',
                           headers={"content-type": "application/json"})
        assert huge.status_code == 413
    assert len(stored_submissions(home)) == 2
