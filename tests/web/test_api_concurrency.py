"""Concurrency against the real server: 100 submissions sent at once all land exactly once, and
predictions made in parallel equal the same predictions made one by one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.web.server import BackgroundServer
from support.web import ANSWERS, stored_submissions

AT_ONCE = 100


def all_at_once(n: int, request: Callable[[httpx.Client, int], Any], url: str) -> list[Any]:
    """Run ``request(client, i)`` for i < n from n threads released together."""
    gate = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as client:
        def one(i: int) -> Any:
            gate.wait()
            return request(client, i)

        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(one, range(n)))


def test_100_submissions_at_once_all_land_once(web_server: BackgroundServer, web_home: Settings) -> None:
    before = stored_submissions(web_home)

    def submit(client: httpx.Client, i: int) -> tuple[int, httpx.Response]:
        body = {**ANSWERS, "bmi": 20 + i / 10, "heart_disease": i % 2 == 0, "consent": True}
        return i, client.post("/api/v1/submissions", json=body)

    results = all_at_once(AT_ONCE, submit, web_server.url)
    assert [r.status_code for _, r in results] == [201] * AT_ONCE, [r.text for _, r in results][:3]
    sent = {r.json()["submission_id"]: i for i, r in results}
    assert len(sent) == AT_ONCE  # every key is new

    after = stored_submissions(web_home)
    new = after[~after["submission_id"].isin(before["submission_id"])]
    assert len(after) == len(before) + AT_ONCE  # none lost, none doubled
    assert set(new["submission_id"]) == set(sent)
    for row in new.itertuples():  # each row holds what its own request sent
        i = sent[row.submission_id]
        assert row.bmi == pytest.approx(20 + i / 10)
        assert bool(row.heart_disease) is (i % 2 == 0)


def test_parallel_predictions_equal_sequential_ones(web_server: BackgroundServer) -> None:
    bodies = [{**ANSWERS, "bmi": 15 + i, "age_category": age}
              for i, age in enumerate(["25-29", "45-49", "65-69", "80 or older"] * 8)]
    with httpx.Client(base_url=web_server.url, timeout=60) as client:
        one_by_one = [client.post("/api/v1/predict", json=b).json() for b in bodies]
    together = all_at_once(len(bodies), lambda c, i: c.post("/api/v1/predict", json=bodies[i]).json(),
                           web_server.url)
    assert together == one_by_one
    assert len({round(r["probability"], 12) for r in together}) > 1
