"""The predict fast path answers exactly as the FastAPI route: the same requests, valid and not, sent
to a real server with it and one without (copies of one trained home), compared byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from heartrisk.config import ConfigError, Settings
from heartrisk.web.app import WebSettings
from heartrisk.web.risk_check import fast_path
from heartrisk.web.risk_check.scorer import random_rows
from heartrisk.web.server import BackgroundServer
from support.web import ANSWERS, copy_home

JSON = {"content-type": "application/json"}
ROWS = 12
PLAIN_QUERIES = ["", "?explain=false", "?context=false", "?explain=0&context=0", "?context=1&explain=true"]
#: Queries the fast path leaves to FastAPI (pydantic's lax bools, repeats, unknown keys, no value).
ODD_QUERIES = ["?explain=yes", "?explain=TRUE", "?explain=false&explain=true", "?foo=1", "?explain",
               "?explain=maybe", "?context=off&explain=on", "?explain=%74rue"]
#: Bodies that are not plain valid answers: each is FastAPI's to refuse.
BAD_BODIES: list[bytes] = [
    b'{"bmi": "31"}', b'{"bmi": 1e9}', b"[]", b"null", b'"bmi"', b'{"unknown": 1}',
    b'{"smoking": "Yes", "smoking": "No"}', b"\xff\xfe{}", b'{"bmi": NaN}', b'{"bmi": Infinity}', b"",
    b"{", b'{"bmi": true}', b'{"physical_health": 3.5}', b'{"sex": "male"}', b'{"bmi": null, "x": {}}',
    b"[" * 3000, b'{"a":' * 2000,  # nested too deep for the parser (RecursionError, not a ValueError)
]
#: Valid bodies written unusually (spacing, a trailing newline, exponents, Unknown as null).
ODD_VALID: list[bytes] = [b' { "bmi" : 30 } ', b'{"bmi": 30}\n', b'{"bmi": 3.0e1}', b"{}",
                          json.dumps({**ANSWERS, "sex": None}).encode()]


#: Requests the fast path answers itself: the plain ones, charset=utf-8 and Application/JSON, the
#: unusual but valid bodies, and the chunked one.
TAKEN = ROWS * len(PLAIN_QUERIES) + 2 + len(ODD_VALID) + 1


@pytest.fixture(scope="module")
def servers(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    with (BackgroundServer(copy_home(trained_home, tmp_path_factory.mktemp("fast") / "home"),
                           WebSettings(port=0, fast_predict=True)) as fast,
          BackgroundServer(copy_home(trained_home, tmp_path_factory.mktemp("route") / "home"),
                           WebSettings(port=0, fast_predict=False)) as route):
        yield fast, route


def requests() -> Iterator[tuple[str, dict[str, str], Any]]:
    """(query, headers, body) of every case compared."""
    for row in random_rows(ROWS, seed=16):
        for query in PLAIN_QUERIES:
            yield query, JSON, json.dumps(row).encode()
    for query in ODD_QUERIES:
        yield query, JSON, json.dumps(ANSWERS).encode()
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/json; charset=utf-8"},
                    {"content-type": "Application/JSON"}, {"content-type": "application/merge-patch+json"}):
        yield "", headers, json.dumps(ANSWERS).encode()
    for body in [*BAD_BODIES, *ODD_VALID]:
        yield "", JSON, body
    yield "", JSON, iter([b'{"bmi": ', b"30}"])  # chunked: no Content-Length


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    return response.status_code, headers, response.content


def test_the_fast_path_answers_every_request_as_the_route_does(
        servers: tuple[BackgroundServer, BackgroundServer], monkeypatch: pytest.MonkeyPatch) -> None:
    fast, route = servers
    answered = []  # what the fast path answered itself, over HTTP (the servers run in this process)
    real = fast_path.answer

    def counted(*args: Any) -> bytes | None:
        body = real(*args)
        answered.append(body is not None)
        return body

    monkeypatch.setattr(fast_path, "answer", counted)
    differences, statuses = [], set()
    with httpx.Client(base_url=fast.url, timeout=30) as a, httpx.Client(base_url=route.url, timeout=30) as b:
        for query, headers, body in requests():
            content = list(body) if not isinstance(body, bytes) else body
            got = comparable(a.post("/api/v1/predict" + query, content=_again(content), headers=headers))
            want = comparable(b.post("/api/v1/predict" + query, content=_again(content), headers=headers))
            statuses.add(want[0])
            if got != want:
                differences.append(f"{query} {headers} {body!r}: {got[0]} {got[2][:120]!r} "
                                   f"!= {want[0]} {want[2][:120]!r}")
    assert differences == [], "\n".join(differences)
    assert statuses == {200, 400, 422}  # answers, invalid answers, bodies that do not parse
    assert sum(answered) == TAKEN  # it did answer: without this the comparison passes with it off


def _again(content: Any) -> Any:
    return iter(content) if isinstance(content, list) else content


def test_the_fast_path_takes_the_plain_requests_and_leaves_the_rest(
        servers: tuple[BackgroundServer, BackgroundServer]) -> None:
    """Which requests ``answer`` takes, one by one."""
    state = servers[0].app.state
    taken, left = [], []
    for query, headers, body in requests():
        scope = {"type": "http", "method": "POST", "path": fast_path.PATH,
                 "query_string": query.removeprefix("?").encode(),
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        message = {"type": "http.request", "body": body if isinstance(body, bytes) else b"".join(body)}
        (taken if fast_path.answer(state, scope, message) is not None else left).append((query, body))
    assert len(taken) == TAKEN
    assert not any(body in BAD_BODIES for _, body in taken)
    assert not any(query in ODD_QUERIES for query, _ in taken)


def test_the_setting_reads_as_every_setting_and_a_bad_value_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTRISK_FAST_PREDICT", "off")
    assert WebSettings().fast_predict is False
    monkeypatch.setenv("HEARTRISK_FAST_PREDICT", "maybe")
    with pytest.raises(ConfigError, match="HEARTRISK_FAST_PREDICT"):
        WebSettings()
