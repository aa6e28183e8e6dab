"""The group-commit submission writer: submissions that arrive together share one Delta commit, and
every guarantee of one commit per request holds (answered after the commit, nothing lost or doubled,
a refused submission stores nothing, a failed batch fails no innocent row, a stop writes the queue).

The writer works on real Delta tables in a temporary home. To have work queued behind a commit in
flight, a test holds the table's own file lock (what another writer, say the daily job, would do),
so the writer's first commit waits on it while more submissions arrive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import httpx
import pytest
from test_api_concurrency import all_at_once

from heartrisk.config import Settings
from heartrisk.sources.submissions import add_submission, submission_row
from heartrisk.store.groups import HEART_USER, open_group
from heartrisk.store.table import FeatureGroup
from heartrisk.validation import ValidationError
from heartrisk.web.app import WebSettings
from heartrisk.web.risk_check.submission_writer import SubmissionWriter, WriterStoppedError
from heartrisk.web.server import BackgroundServer
from support.web import ANSWERS, stored_submissions


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def table(settings: Settings) -> FeatureGroup:
    group = open_group(settings, HEART_USER)
    group.create()
    return group


def rows_per_commit(group: FeatureGroup, after_version: int) -> list[int]:
    """Rows added by each commit after ``after_version``, oldest first (from the Delta history)."""
    commits = [h for h in group.history() if h["version"] > after_version]
    assert all(h["operation"] == "MERGE" for h in commits)  # keyed inserts (store/table.py)
    return [h["operationMetrics"]["num_target_rows_inserted"]
            for h in sorted(commits, key=lambda h: h["version"])]


def row(settings: Settings, i: int) -> object:
    return submission_row(settings, {**ANSWERS, "bmi": 20 + i / 10}, i % 2 == 0)


@pytest.fixture
def writer(settings: Settings) -> Iterator[SubmissionWriter]:
    running = SubmissionWriter(settings, max_batch=5)
    running.start()
    yield running
    running.stop()


def queue_behind_a_commit(writer: SubmissionWriter, group: FeatureGroup, rows: list) -> list[Future[str]]:
    """Queue ``rows`` while the table is locked: the first is taken into a commit that waits on the
    lock, the rest gather behind it. The caller releases the lock."""
    first = writer.enqueue(rows[0])
    wait_until(lambda: writer.waiting == 1 and writer.queued == 0)  # taken: its commit is waiting
    return [first, *(writer.enqueue(r) for r in rows[1:])]


# ------------------------------------------------------------------------------------ the writer
def test_rows_arriving_during_a_commit_share_the_next_commits(settings: Settings,
                                                              writer: SubmissionWriter) -> None:
    group = table(settings)
    start = group.version()
    rows = [row(settings, i) for i in range(13)]
    with group._lock():
        futures = queue_behind_a_commit(writer, group, rows)
        assert not any(f.done() for f in futures)  # nobody is answered before the commit
    ids = [f.result(timeout=60) for f in futures]
    assert ids == [str(r["submission_id"].iat[0]) for r in rows]  # each its own id

    assert rows_per_commit(group, start) == [1, 5, 5, 2]  # the one in flight, then batches of max 5
    stored = group.read()
    assert sorted(stored["submission_id"]) == sorted(ids)  # all stored, none twice
    by_id = stored.set_index("submission_id")
    for i, submission_id in enumerate(ids):  # each row holds its own answers
        assert by_id.loc[submission_id, "bmi"] == pytest.approx(20 + i / 10)


def test_a_lone_submission_is_written_at_once(settings: Settings, writer: SubmissionWriter) -> None:
    group = table(settings)
    start = group.version()
    ids = [writer.add({**ANSWERS, "bmi": 25.0 + i}, True) for i in range(3)]
    assert rows_per_commit(group, start) == [1, 1, 1]
    assert sorted(group.read()["submission_id"]) == sorted(ids)


def test_a_refused_submission_is_not_queued_and_says_what_add_submission_says(
        settings: Settings, writer: SubmissionWriter) -> None:
    group = table(settings)
    start = group.version()
    for answers, diagnosis in [({**ANSWERS, "bmi": 500}, True), ({**ANSWERS, "smoking": "Sometimes"}, False),
                               ({**ANSWERS, "shoe_size": 44}, True), (ANSWERS, "Yes")]:
        with pytest.raises(ValidationError) as direct:
            add_submission(settings, answers, diagnosis)  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as queued:
            writer.add(answers, diagnosis)  # type: ignore[arg-type]
        assert str(queued.value) == str(direct.value)
        assert queued.value.problems == direct.value.problems
    assert writer.waiting == 0 and group.version() == start
    writer.stop()  # checked before it is queued: refused as invalid even by a writer that takes nothing
    with pytest.raises(ValidationError, match="bmi"):
        writer.add({**ANSWERS, "bmi": 500}, True)


def test_a_failed_batch_is_written_row_by_row(settings: Settings, writer: SubmissionWriter) -> None:
    group = table(settings)
    start = group.version()
    rows = [row(settings, i) for i in range(4)]
    bad = row(settings, 9)
    bad["bmi"] = 500.0  # past the check a request makes: a row the store itself refuses
    with group._lock():
        futures = queue_behind_a_commit(writer, group, [rows[0], rows[1], bad, rows[2], rows[3]])
    good = [f for f in futures if f is not futures[2]]
    ids = [f.result(timeout=60) for f in good]
    with pytest.raises(ValidationError, match="bmi"):
        futures[2].result(timeout=60)

    # The batch [1, bad, 2, 3] was refused whole, then written one by one: the bad row alone fails.
    assert rows_per_commit(group, start) == [1, 1, 1, 1]
    assert sorted(group.read()["submission_id"]) == sorted(ids)


def test_stop_writes_the_queue_and_refuses_what_comes_later(settings: Settings) -> None:
    writer = SubmissionWriter(settings)
    writer.start()
    group = table(settings)
    rows = [row(settings, i) for i in range(10)]
    with group._lock():
        futures = queue_behind_a_commit(writer, group, rows)
        stopping = threading.Thread(target=writer.stop)
        stopping.start()
        wait_until(lambda: not writer.running)
        with pytest.raises(WriterStoppedError, match="nothing was stored"):
            writer.enqueue(row(settings, 99))
        assert stopping.is_alive()  # still waiting for the queue to be written
    stopping.join(60)
    assert not stopping.is_alive()
    ids = [f.result(timeout=0) for f in futures]
    assert sorted(group.read()["submission_id"]) == sorted(ids)
    writer.stop()  # again: nothing to do


# ------------------------------------------------------------------------------------ the server
def body(i: int, **changes: object) -> dict:
    return {**ANSWERS, "bmi": 20 + i / 10, "heart_disease": i % 2 == 0, "consent": True, **changes}


@pytest.fixture
def server(settings: Settings) -> Iterator[BackgroundServer]:
    with BackgroundServer(settings, WebSettings(port=0, poll_seconds=0)) as running:
        yield running


#: Bodies the API refuses, each with the field its 422 must name.
INVALID = [({"bmi": 500}, "bmi"), ({"consent": False}, "consent"), ({"smoking": "Sometimes"}, "smoking"),
           ({"physical_health": 2.5}, "physical_health"), ({"shoe_size": 44}, "shoe_size")]


def test_concurrent_submissions_share_commits_and_refused_ones_store_nothing(
        server: BackgroundServer, settings: Settings) -> None:
    n = 60
    requests = [body(i) if i % 3 else body(i, **INVALID[i // 3 % len(INVALID)][0]) for i in range(n)]
    results = all_at_once(n, lambda client, i: client.post("/api/v1/submissions", json=requests[i]),
                          server.url)

    valid = [i for i in range(n) if i % 3]
    for i in range(0, n, 3):  # refused: 422 naming the field, as before the writer
        response = results[i]
        field = INVALID[i // 3 % len(INVALID)][1]
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    assert [results[i].status_code for i in valid] == [201] * len(valid), [r.text for r in results][:3]
    acknowledged = {results[i].json()["submission_id"]: i for i in valid}
    assert len(acknowledged) == len(valid)

    stored = stored_submissions(settings)
    assert sorted(stored["submission_id"]) == sorted(acknowledged)  # all valid ones once, nothing else
    for stored_row in stored.itertuples():
        i = acknowledged[stored_row.submission_id]
        assert stored_row.bmi == pytest.approx(20 + i / 10)
        assert bool(stored_row.heart_disease) is (i % 2 == 0)
    commits = rows_per_commit(open_group(settings, HEART_USER), 0)
    assert sum(commits) == len(valid) and len(commits) < len(valid), commits


def test_a_submission_after_the_writer_stopped_gets_503_and_stores_nothing(
        server: BackgroundServer, settings: Settings) -> None:
    assert httpx.post(server.url + "/api/v1/submissions", json=body(1)).status_code == 201
    server.app.state.submissions.stop()  # what the app's shutdown does
    response = httpx.post(server.url + "/api/v1/submissions", json=body(2))
    assert response.status_code == 503
    assert "stopping" in response.json()["detail"] and "nothing was stored" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert len(stored_submissions(settings)) == 1


def test_stopping_the_server_writes_queued_submissions_first(settings: Settings) -> None:
    n = 20
    server = BackgroundServer(settings, WebSettings(port=0, poll_seconds=0)).start()
    writer: SubmissionWriter = server.app.state.submissions
    group = table(settings)
    results: list[httpx.Response | Exception] = []

    def send_all() -> None:
        results.extend(all_at_once(n, lambda c, i: _post(c, body(i)), server.url))

    sender = threading.Thread(target=send_all)
    with group._lock():  # the first commit waits; the other submissions queue behind it
        sender.start()
        wait_until(lambda: writer.waiting == n)
        stopper = threading.Thread(target=server.stop)
        stopper.start()  # the server stops taking connections and waits for these requests
        wait_until(lambda: server.server.should_exit)
        time.sleep(0.5)  # uvicorn has closed its listener and waits for the requests in flight
    stopper.join(60)
    sender.join(60)
    assert not stopper.is_alive() and not sender.is_alive()

    acknowledged = [r.json()["submission_id"] for r in results
                    if isinstance(r, httpx.Response) and r.status_code == 201]
    assert not [r for r in results if isinstance(r, httpx.Response) and r.status_code >= 500]
    stored = list(group.read()["submission_id"])
    assert set(acknowledged) <= set(stored)  # nothing acknowledged is lost
    assert len(stored) == len(set(stored)) == n  # everything queued was written, once
    assert len(acknowledged) == n, results  # and the server waited to answer them all


def _post(client: httpx.Client, json: dict) -> httpx.Response | Exception:
    try:
        return client.post("/api/v1/submissions", json=json)
    except httpx.HTTPError as exc:  # a request cut off by the stop: not acknowledged
        return exc
