"""Three `serve` replicas on three homes, one store on S3, one MLflow server with S3 artifacts, one
Redis: submissions stored exactly once, a `forget` during a burst removes the row everywhere, and the
rate limit and the operator lockout hold for the three together."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from heartrisk.store.groups import HEART_USER, open_group
from support.cluster import Cluster
from support.process import ServeProcess
from support.reliability import REPO
from support.web import ANSWERS

pytestmark = pytest.mark.scaleout


#: The submission limit per client for the whole deployment: the bursts below come from one address.
LIMIT = 300
PASSWORD = "one-operator-password-for-every-replica"
ACCEPTED: list[str] = []  # every submission a replica acknowledged in this module, in order


@pytest.fixture(scope="module")
def replicas(cluster: Cluster) -> Iterator[list[ServeProcess]]:
    env = {"HEARTRISK_REDIS_URL": cluster.redis, "HEARTRISK_SUBMISSION_LIMIT": str(LIMIT),
           "HEARTRISK_ADMIN_PASSWORD": PASSWORD}
    with ExitStack() as stack:
        started = [ServeProcess(cluster.env(cluster.machine(f"replica-{i}"), **env),
                                cluster.root / f"replica-{i}.log", cwd=REPO) for i in range(3)]
        for server in started:
            stack.callback(server.stop)
        for server in started:
            server.wait_ready(timeout=300)  # the champion comes from the MLflow server's S3 artifacts
        yield started


def submit(url: str) -> tuple[int, str]:
    body = {**ANSWERS, "heart_disease": bool(uuid.uuid4().int % 2), "consent": True}
    answer = httpx.post(f"{url}/api/v1/submissions", json=body, timeout=120)
    if answer.status_code == 201:
        ACCEPTED.append(answer.json()["submission_id"])
    return answer.status_code, answer.json().get("submission_id", answer.text)


def burst(replicas: list[ServeProcess], each: int) -> list[tuple[int, str]]:
    """``each`` submissions to every replica, all at once (30 clients)."""
    urls = [server.url for server in replicas for _ in range(each)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        return list(pool.map(submit, urls))


def test_three_replicas_store_150_submissions_once(cluster: Cluster, replicas: list[ServeProcess]) -> None:
    before = set(open_group(cluster.first, HEART_USER).read(columns=["submission_id"])["submission_id"]) \
        if open_group(cluster.first, HEART_USER).exists() else set()
    answers = burst(replicas, 50)
    assert [code for code, _ in answers] == [201] * 150, answers[:5]
    acknowledged = {sid for _, sid in answers}
    stored = open_group(cluster.first, HEART_USER).read(columns=["submission_id"])["submission_id"]
    new = [sid for sid in stored if sid not in before]
    assert len(acknowledged) == 150 and sorted(new) == sorted(acknowledged)


def test_forget_during_a_burst_removes_the_row_everywhere(cluster: Cluster,
                                                          replicas: list[ServeProcess]) -> None:
    from heartrisk.jobs.daily import run_daily
    from heartrisk.jobs.infer import run_infer
    from heartrisk.store.groups import HEART, HEART_PREDICTIONS

    code, target = submit(replicas[0].url)
    assert code == 201
    run_daily(cluster.first, synthetic=0)  # merged into heart, then scored
    run_infer(cluster.first, hours=24 * 365 * 10)
    forgetter = cluster.machine("forgetter")
    with ThreadPoolExecutor(max_workers=1) as pool:
        during = pool.submit(burst, replicas, 20)
        forgot = subprocess.run([sys.executable, "-m", "heartrisk", "forget", target],
                                env=cluster.env(forgetter), capture_output=True, text=True, timeout=600,
                                cwd=REPO)
        answers = during.result()
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    assert "Traceback" not in forgot.stderr and "CommitFailedError" not in forgot.stderr
    assert "forgot submission" in forgot.stdout
    assert [code for code, _ in answers] == [201] * 60
    for spec, column, value in ((HEART_USER, "submission_id", target), (HEART, "record_id", f"user:{target}"),
                                (HEART_PREDICTIONS, "record_id", f"user:{target}")):
        group = open_group(cluster.first, spec)
        for version in range(group.version() + 1):
            try:
                ids = set(group.read(version=version, columns=[column])[column])
            except Exception:
                continue  # purged: nothing to read back
            assert value not in ids, f"{spec.table_name} version {version} still holds it"
    stored = set(open_group(cluster.first, HEART_USER).read(columns=["submission_id"])["submission_id"])
    assert {sid for _, sid in answers} <= stored  # the burst lost nothing to the forget


def test_an_operator_session_holds_on_every_replica_until_logout(replicas: list[ServeProcess]) -> None:
    """Before Redis held them, a session lived in the memory of the replica that made it."""
    login = httpx.post(f"{replicas[0].url}/monitor/login", data={"password": PASSWORD}, timeout=60)
    assert login.status_code == 303, login.text[:300]
    cookies = dict(login.cookies)
    for server in replicas[1:]:
        answer = httpx.get(f"{server.url}/api/v1/monitor/summary", cookies=cookies, timeout=120)
        assert answer.status_code == 200, answer.text[:300]
    out = httpx.post(f"{replicas[2].url}/monitor/logout", cookies=cookies, timeout=60)
    assert out.status_code == 303
    again = httpx.get(f"{replicas[0].url}/api/v1/monitor/summary", cookies=cookies, timeout=60)
    assert again.status_code == 401


def test_the_rate_limit_and_the_lockout_hold_across_replicas(replicas: list[ServeProcess]) -> None:
    """Before: each replica counted alone in its memory, so three allowed three times the limit."""
    statuses = [submit(replicas[i % 3].url)[0] for i in range(LIMIT - len(ACCEPTED) + 9)]
    assert statuses[:-9] == [201] * (len(statuses) - 9) and statuses[-9:] == [429] * 9
    assert len(ACCEPTED) == LIMIT

    wrong = {"authorization": "Basic YWRtaW46bm90LXRoZS1wYXNzd29yZA=="}  # admin:not-the-password
    answers = [httpx.get(f"{replicas[i % 3].url}/api/v1/monitor/summary", headers=wrong, timeout=30)
               for i in range(8)]
    assert [a.status_code for a in answers] == [401] * 8
    # Five wrong guesses (limit 5), spread over the replicas; from then on every replica refuses unchecked.
    assert [("retry-after" in a.headers) for a in answers] == [False] * 5 + [True] * 3
