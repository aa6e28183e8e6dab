"""The Gradio form's routes under attack (issue 12): nothing reaches ``share_outcome`` past the page's
checks, nothing is written to disk by Gradio's upload route, one client cannot fill the queue, no
answer reaches the server log and no Gradio internal text reaches a client, no credentialed CORS, and
every response carrying a person's risk says ``Cache-Control: no-store``.

Each test runs the real app under uvicorn on 127.0.0.1; "another client" is a second loopback address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from filelock import FileLock

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.store.groups import HEART_USER
from heartrisk.web.app import WebSettings, create_app
from heartrisk.web.guard.security import SecuritySettings
from heartrisk.web.server import BackgroundServer
from support.reliability import FORM_ANSWERS, form_event, form_fn_index
from support.web import copy_home, stored_submissions

#: A valid share as the page sends it: the 17 answers, the diagnosis, the consent tick.
SHARE = [*FORM_ANSWERS, "Yes", True]
#: An answer no person gives, to find in logs and responses (BMI 37.123457 is valid and unusual).
MARKED = ["37.123457", *FORM_ANSWERS[1:]]


@pytest.fixture
def home(trained_home: Settings, tmp_path: Path) -> Settings:
    return copy_home(trained_home, tmp_path / "home")


def other_client(server: BackgroundServer, address: str = "127.0.0.2") -> httpx.Client:
    """A client from another loopback address: another person, as the server tells them apart."""
    return httpx.Client(base_url=server.url, timeout=60,
                        transport=httpx.HTTPTransport(local_address=address))


# ------------------------------------------------------------------------------ finding 1: REST bypass
DIRECT_ROUTES = ["/gradio_api/run/share_outcome", "/gradio_api/api/share_outcome",
                 "/gradio_api/run/share_outcome/", "/gradio_api/api/share_outcome/",
                 "/gradio_api/call/share_outcome", "/gradio_api/call/v2/share_outcome",
                 "/gradio_api/run/predict", "/gradio_api/call/check_risk"]


def test_no_direct_route_runs_a_form_event(home: Settings) -> None:
    """`/run`, `/api`, `/call` and `/call/v2` are closed: the share event runs only through the queue,
    where the page's validator runs. Before the fix `/run/share_outcome` stored rows without consent."""
    no_consent = [*FORM_ANSWERS, "Yes", False]
    invalid = ["abc", *FORM_ANSWERS[1:], "Maybe", True]
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for route in DIRECT_ROUTES:
            for data in (no_consent, invalid, SHARE):
                answer = client.post(route, json={"data": data, "session_hash": "s1"})
                assert answer.status_code == 404, (route, answer.status_code, answer.text[:200])
    assert stored_submissions(home).empty


def share_function(app: Any) -> Any:
    """The share event's own function, found on the mounted Blocks as the queue would run it."""
    from gradio.helpers import special_args

    for route in app.router.routes:
        blocks = getattr(getattr(route, "app", None), "get_blocks", None)
        if blocks is None:
            continue
        for fn in blocks().fns.values():
            if fn.concurrency_id == "share":
                def call(*values: Any, fn: Any = fn) -> Any:
                    args, *_ = special_args(fn.fn, inputs=list(values), request=None)
                    return fn.fn(*args)
                return call
    raise AssertionError("no share event")


@pytest.mark.parametrize(("values", "why"), [
    ([*FORM_ANSWERS, "Yes", False], "no consent"),
    ([*FORM_ANSWERS, "Yes", None], "consent None"),
    ([*FORM_ANSWERS, "Yes", 1], "consent 1"),
    ([*FORM_ANSWERS, "Yes", "true"], "consent 'true'"),
    ([*FORM_ANSWERS, "Maybe", True], "diagnosis not Yes/No"),
    ([*FORM_ANSWERS, None, True], "no diagnosis"),
    (["abc", *FORM_ANSWERS[1:], "No", True], "an invalid answer"),
    (["500", *FORM_ANSWERS[1:], "No", True], "an out-of-range answer"),
])
def test_share_outcome_itself_checks_consent_diagnosis_and_answers(shared_app: tuple[Settings, Any],
                                                                   values: list[Any], why: str) -> None:
    """Whatever route reaches it, the function re-checks: it never stores without consent === True,
    never turns an invalid diagnosis into "No", never stores an invalid answer as Unknown."""
    home, share = shared_app
    said = share(*values)
    assert "Nothing was stored" in str(said), why
    assert stored_submissions(home).empty, why


@pytest.fixture(scope="module")
def shared_app(web_home: Settings) -> Iterator[tuple[Settings, Any]]:
    """The app (writer running) on this module's home, and its share function."""
    with TestClient(create_app(web_home, WebSettings(poll_seconds=0))) as client:
        yield web_home, share_function(client.app)


def test_the_share_limit_counts_events_not_url_suffixes(home: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is counted where a row is stored: a share through the queue, then any other URL
    form, all come out of one budget (before the fix `/call/...` and `/run/...` were not counted)."""
    web = WebSettings(port=0, security=SecuritySettings(submission_limit=2))
    with BackgroundServer(home, web) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        share = form_fn_index(server.app, "share")
        first = [form_event(client, share, SHARE, f"q{i}") for i in range(2)]
        assert all(status == 200 and done and done["success"] for status, done in first)
        for route in ("/gradio_api/call/share_outcome", "/gradio_api/run/share_outcome",
                      "/gradio_api/queue/join/"):
            client.post(route, json={"data": SHARE, "fn_index": share, "session_hash": "x1"})
        status, _ = form_event(client, share, SHARE, "q-last")
        assert status == 429
        body = {**dict.fromkeys(FEATURE_NAMES), "heart_disease": True, "consent": True}
        assert client.post("/api/v1/submissions", json=body).status_code == 429  # one budget
    assert len(stored_submissions(home)) == 2


# ------------------------------------------------------------------------------ finding 3: uploads
def test_the_upload_route_is_closed_and_writes_nothing(home: Settings, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = tmp_path / "gradio-temp"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for attempt in range(3):
            answer = client.post("/gradio_api/upload", files={"files": (f"f{attempt}.txt", b"x" * 1000)})
            assert answer.status_code == 404, answer.text[:200]
            assert str(uploads) not in answer.text and "/tmp" not in answer.text
        cross_site = client.post("/gradio_api/upload", files={"files": ("a.html", b"<b>x</b>")},
                                 headers={"origin": "https://evil.example"})
        assert cross_site.status_code == 404
        for path in ("/gradio_api/upload_progress?upload_id=x", "/gradio_api/file=/etc/hostname",
                     "/gradio_api/file/etc/hostname", "/gradio_api/proxy=https://x.hf.space/a"):
            assert client.get(path).status_code == 404, path
        status, done = form_event(client, form_fn_index(server.app, "predict"), FORM_ANSWERS, "r1")
        assert status == 200 and done and done["success"]  # a risk check writes no file either
    written = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
    assert written == []


# ------------------------------------------------------------------------------ finding 8: fairness
def test_one_client_cannot_fill_the_queue(home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events wait behind a held table lock (one at a time): one client's flood of joins is capped at
    its share of the queue and the next person is still served (before: 503 "Queue is full")."""
    monkeypatch.setenv("HEARTRISK_QUEUE_PER_CLIENT", "3")
    web = WebSettings(port=0, form_concurrency=1, form_queue_size=12,
                      security=SecuritySettings.from_env(submission_limit=1000))
    lock = FileLock(str(home.locks_dir / f"{HEART_USER.table_name}.lock"))
    with BackgroundServer(home, web) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        share = form_fn_index(server.app, "share")
        check = form_fn_index(server.app, "predict")
        lock.acquire()
        try:
            statuses = []
            for i in range(30):  # one client floods: the first share blocks on the lock, the rest wait
                joined = client.post("/gradio_api/queue/join", json={
                    "data": SHARE, "fn_index": share, "session_hash": f"flood{i}", "event_data": None,
                    "trigger_id": None})
                statuses.append(joined.status_code)
            assert statuses.count(200) <= 3 + 1, statuses  # the running one and at most 3 waiting
            assert set(statuses) <= {200, 429}, statuses
            with other_client(server) as other:
                joined = other.post("/gradio_api/queue/join", json={
                    "data": FORM_ANSWERS, "fn_index": check, "session_hash": "other", "event_data": None,
                    "trigger_id": None})
                assert joined.status_code == 200, joined.text[:200]
        finally:
            lock.release()


# ------------------------------------------------------------------------------ finding 9: logs, errors
MALFORMED_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("too few inputs", {"data": MARKED[:3]}),
    ("an answer not among the choices", {"data": [*MARKED[:-1], "Maybe"]}),
    ("a number where text goes", {"data": [37.123457, *MARKED[1:]]}),
    ("a list where a choice goes", {"data": [*MARKED[:-1], ["37.123457"]]}),
    ("too many inputs", {"data": [*MARKED, "37.123457"]}),
    ("no data", {"data": None}),
]


def test_no_answer_in_the_log_and_no_gradio_internals_to_the_client(home: Settings,
                                                                    capfd: pytest.CaptureFixture) -> None:
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        check = form_fn_index(server.app, "predict")
        share = form_fn_index(server.app, "share")
        answers = []
        for fn_index in (check, share):
            for what, body in MALFORMED_EVENTS:
                data = body["data"]
                if fn_index == share and isinstance(data, list):
                    data = [*data, "Yes", True]
                answer = client.post("/gradio_api/queue/join", json={
                    **body, "data": data, "fn_index": fn_index, "session_hash": f"m{len(answers)}"})
                answers.append((what, answer))
        status, done = form_event(client, check, MARKED, "fine")  # a valid check: no answer logged
        assert status == 200 and done and done["success"]
    out, err = capfd.readouterr()
    for leak in ("37.123457", "Received inputs", "list of choices"):
        assert leak not in out and leak not in err, (leak, (out + err)[:1000])
    for what, answer in answers:
        for internal in ("Received inputs", "Wanted inputs", "list of choices", "gradio.components",
                         "37.123457", "event handler", "Traceback"):
            assert internal not in answer.text, (what, internal, answer.text[:300])
        assert answer.status_code == 422, (what, answer.status_code, answer.text[:300])


def test_a_stream_of_an_unknown_session_is_refused_without_a_traceback(
        home: Settings, capfd: pytest.CaptureFixture) -> None:
    """Before: Gradio began the event stream (200), then raised 404 inside it, and each such request
    wrote a ~7 KB traceback to the server log: anyone could fill the operator's disk with GETs."""
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for params in ({"session_hash": "nobody"}, {"session_hash": "x" * 64},
                       {"session_hash": "not a hash!"}, {}):
            answer = client.get("/gradio_api/queue/data", params=params)
            assert answer.status_code == 404, (params, answer.status_code, answer.text[:200])
            assert answer.json()["detail"].startswith("no such session"), answer.text
        status, done = form_event(client, form_fn_index(server.app, "predict"), FORM_ANSWERS, "known")
        assert status == 200 and done and done["success"]  # a session that joined still streams
        # A known session named twice: Gradio reads the last (blank) one (attack helper, session 5).
        for query in ("session_hash=known&session_hash=", "session_hash=&session_hash=known",
                      "session_hash=known&session_hash=known"):
            answer = client.get(f"/gradio_api/queue/data?{query}")
            assert answer.status_code == 404, (query, answer.status_code, answer.text[:200])
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (out + err)[:1000]


def test_a_deeply_nested_join_body_is_refused_as_malformed(home: Settings,
                                                          capfd: pytest.CaptureFixture) -> None:
    """Before: 1 KB of '[' raised RecursionError in the guard's JSON parse: a 500 and a 3.5 KB
    traceback per request."""
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for body in ("[" * 1000, '{"data": ' + "[" * 5000 + "]" * 5000 + "}"):
            answer = client.post("/gradio_api/queue/join", content=body,
                                 headers={"content-type": "application/json"})
            assert answer.status_code == 422, (answer.status_code, answer.text[:200])
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (out + err)[:1000]


def test_responses_carrying_a_risk_are_not_stored_by_caches(home: Settings) -> None:
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        check = form_fn_index(server.app, "predict")
        joined = client.post("/gradio_api/queue/join", json={
            "data": FORM_ANSWERS, "fn_index": check, "session_hash": "nc1", "event_data": None,
            "trigger_id": None})
        assert joined.status_code == 200
        assert "no-store" in joined.headers.get("cache-control", "")
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": "nc1"}) as stream:
            assert "no-store" in stream.headers.get("cache-control", "")
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                    break
        for path in ("/", "/api/v1/health"):
            assert "no-store" in client.get(path).headers.get("cache-control", ""), path


def test_no_credentialed_cors_for_other_origins(home: Settings) -> None:
    """Gradio answered any localhost origin with `Access-Control-Allow-Origin` and credentials."""
    with BackgroundServer(home) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for origin in ("http://localhost:9999", "http://127.0.0.1:1", "null", "https://evil.example"):
            for method, path in (("GET", "/"), ("POST", "/gradio_api/queue/join"),
                                 ("POST", "/api/v1/predict"), ("GET", "/api/v1/health")):
                answer = client.request(method, path, headers={"origin": origin}, json={})
                assert "access-control-allow-origin" not in answer.headers, (origin, path)
                assert "access-control-allow-credentials" not in answer.headers, (origin, path)
            preflight = client.options("/gradio_api/queue/join", headers={
                "origin": origin, "access-control-request-method": "POST"})
            assert "access-control-allow-origin" not in preflight.headers, origin
            assert "access-control-allow-credentials" not in preflight.headers, origin

