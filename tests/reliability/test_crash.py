"""Crash safety: the real CLI killed with SIGKILL at random (seeded) moments, 20 times in all, then
run again; every table stays readable, no row is lost or doubled, and the counts equal a clean run's.

* `heartrisk ingest` (8 kills), `heartrisk daily --synthetic 50` with 20 pending submissions (4),
  `heartrisk infer` over the 6,000 sample rows (4): each kill on a fresh copy of the same home, a moment
  drawn between 0.15 (ingest: 0.5) and 1.1 times the clean run's duration (a kill that comes after the
  process ended does not count: the loop draws again). A daily run killed after it had recorded its
  run as FINISHED (while the process was exiting) is checked as it is, not run again.
* A submission burst (4): 30 submissions from 3 client threads to `heartrisk serve`, the server killed
  mid-burst, started again, and what was not stored sent again. Every acknowledged (201) submission
  must be stored exactly once; one whose answer the kill cut off may or may not be (HTTP cannot tell
  the client which), but never twice.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import GROUPS, HEART, HEART_PREDICTIONS, HEART_USER, open_group
from support.reliability import heartrisk, served
from support.web import ANSWERS

pytestmark = pytest.mark.reliability

SEED = 20261126
EARLIEST, LATEST = 0.15, 1.1
MAX_ATTEMPTS = 4  # draws per required kill before giving up


# ------------------------------------------------------------------------------------ harness
def run_clean(args: list[str], settings: Settings, log: Path) -> float:
    """Run the command to its end; returns its duration."""
    started = time.monotonic()
    process = heartrisk(args, settings, log)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    return time.monotonic() - started


def kill_at(args: list[str], settings: Settings, log: Path, moment: float) -> bool:
    """Start the command and SIGKILL it ``moment`` seconds later; False if it had already ended."""
    process = heartrisk(args, settings, log)
    try:
        process.wait(timeout=moment)
        return False  # finished first: not a kill
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        return True


def table_state(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every table of the home, read whole (so a broken one fails here), keys checked unique."""
    state = {}
    for spec in GROUPS:
        group = open_group(settings, spec)
        if not group.exists():
            continue
        frame = group.read()
        assert not frame.duplicated(list(spec.key)).any(), f"{spec.table_name}: a row is doubled"
        state[spec.table_name] = frame
    return state


def counts(settings: Settings) -> dict[str, Any]:
    state = table_state(settings)
    out: dict[str, Any] = {name: len(frame) for name, frame in state.items()}
    if HEART.table_name in state:
        out["heart_by_source"] = state[HEART.table_name]["source"].value_counts().sort_index().to_dict()
    return out


def crash_cycles(name: str, base: Settings, tmp_path: Path, args: list[str], kills: int,
                 check: Callable[[Settings], None],
                 finished: Callable[[Settings], bool] | None = None,
                 window: tuple[float, float] = (EARLIEST, LATEST)) -> dict[str, Any]:
    """A clean run on a copy of ``base``, then ``kills`` kill + re-run cycles, each on a fresh copy.

    ``finished(home)`` tells a kill that came after the job had recorded its work as done (while the
    process was exiting): then there is nothing to re-run (a re-run would be the next day's run).
    """
    rng = random.Random(f"{SEED}-{name}")
    clean = Settings(home=tmp_path / f"{name}-clean")
    shutil.copytree(base.home, clean.home)
    duration = run_clean(args, clean, tmp_path / f"{name}-clean.log")
    expected = counts(clean)
    check(clean)
    before = counts(base)
    landed, moments = 0, []
    phases = {"before any write": 0, "after a write": 0, "after the job was done": 0}
    for attempt in range(kills * MAX_ATTEMPTS):
        if landed == kills:
            break
        home = Settings(home=tmp_path / f"{name}-{attempt}")
        shutil.copytree(base.home, home.home)
        log = tmp_path / f"{name}-{attempt}.log"
        moment = duration * rng.uniform(*window)
        if not kill_at(args, home, log, moment):
            continue
        landed += 1
        moments.append(round(moment, 2))
        killed = counts(home)  # readable right after the kill
        if finished is not None and finished(home):
            phases["after the job was done"] += 1
        else:
            phases["after a write" if killed != before else "before any write"] += 1
            run_clean(args, home, log)
        assert counts(home) == expected, f"{name}: killed at {moment:.2f} s of {duration:.2f} s"
        check(home)
        shutil.rmtree(home.home)
    assert landed == kills, f"{name}: only {landed} of {kills} kills landed"
    return {"clean_seconds": round(duration, 2), "kill_moments": moments, "killed": phases,
            "expected": expected}


# ------------------------------------------------------------------------------------ the jobs
def test_ingest_killed_eight_times(settings: Settings, sample_csv: Path, tmp_path: Path) -> None:
    settings.ensure_home()

    def check(home: Settings) -> None:
        assert counts(home)[HEART.table_name] == 6000

    # Most of a 6,000-row ingest is starting Python; its write is at the end, so aim at the second half.
    report = crash_cycles("ingest", settings, tmp_path, ["ingest", "--csv", str(sample_csv)], 8, check,
                          window=(0.5, LATEST))
    print(f"\ningest: {report}")


@pytest.fixture
def with_submissions(quick_synthesizer: Settings) -> Settings:
    for i in range(20):
        add_submission(quick_synthesizer, {**ANSWERS, "bmi": 20.0 + i}, i % 2 == 0)
    return quick_synthesizer


def daily_runs(home: Settings) -> list[str]:
    """Statuses of the home's daily runs in MLflow (none before the first run)."""
    from heartrisk.jobs.daily import EXPERIMENT
    from heartrisk.tracking import client as registry_client

    client = registry_client(home)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return [r.info.status for r in client.search_runs([experiment.experiment_id])] if experiment else []


def test_daily_killed_four_times(with_submissions: Settings, tmp_path: Path) -> None:
    def check(home: Settings) -> None:
        sources = counts(home)["heart_by_source"]
        assert sources == {"kaggle": 6000, "synthetic": 50, "user": 20}
        statuses = daily_runs(home)
        assert statuses.count("FINISHED") == 1 and "RUNNING" not in statuses  # one run did the work

    report = crash_cycles("daily", with_submissions, tmp_path, ["daily", "--synthetic", "50"], 4, check,
                          finished=lambda home: "FINISHED" in daily_runs(home))
    print(f"\ndaily: {report}")


def test_infer_killed_four_times(trained: Settings, tmp_path: Path) -> None:
    expected_ids: set[str] = set()

    def check(home: Settings) -> None:
        scored = open_group(home, HEART_PREDICTIONS).read(columns=["record_id", "model_version"])
        ids = set(scored["record_id"])
        assert len(scored) == 6000 and set(scored["model_version"]) == {"1"}
        if not expected_ids:
            expected_ids.update(ids)
        assert ids == expected_ids

    report = crash_cycles("infer", trained, tmp_path, ["infer", "--hours", "72"], 4, check)
    print(f"\ninfer: {report}")


# ------------------------------------------------------------------------------------ the burst
BURST = 30
KILLED_BURSTS = 4


def send_burst(url: str, indices: list[int], results: dict[int, str | None]) -> None:
    """POST one submission per index (BMI 15 + i/4 tells them apart) from 3 threads."""
    def one(i: int) -> None:
        body = {**ANSWERS, "bmi": 15 + i / 4, "heart_disease": i % 2 == 0, "consent": True}
        try:
            response = httpx.post(url + "/api/v1/submissions", json=body, timeout=30)
            results[i] = response.json()["submission_id"] if response.status_code == 201 else None
        except (httpx.HTTPError, ValueError):
            results[i] = None  # cut off by the kill: stored or not, the client cannot tell

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(one, indices))


def stored_by_bmi(settings: Settings) -> pd.DataFrame:
    group = open_group(settings, HEART_USER)
    return group.read(columns=["submission_id", "bmi"]) if group.exists() else pd.DataFrame(
        columns=["submission_id", "bmi"])


def test_a_submission_burst_killed_four_times(trained: Settings, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-burst")
    kills, cut_off_stored = 0, 0
    server = served(trained, tmp_path / "serve-0.log").wait_ready()
    try:
        for cycle in range(KILLED_BURSTS):
            base = len(stored_by_bmi(trained))
            offset = cycle * BURST  # each cycle's BMIs (15 + i/4, i < 150) differ from the others'
            results: dict[int, str | None] = {}
            burst = threading.Thread(target=send_burst, args=(server.url, [offset + i for i in range(BURST)],
                                                               results))
            burst.start()
            time.sleep(rng.uniform(0.2, 3.0))
            assert server.process.poll() is None
            server.kill()
            kills += 1
            burst.join(timeout=120)
            stored = stored_by_bmi(trained)  # readable right after the kill
            assert not stored["bmi"].duplicated().any() and not stored["submission_id"].duplicated().any()
            acknowledged = {i: sid for i, sid in results.items() if sid}
            mine = stored[stored["bmi"].isin([15 + i / 4 for i in results])]
            assert set(acknowledged.values()) <= set(mine["submission_id"])  # no acknowledged one lost
            cut_off_stored += len(mine) - len(acknowledged)

            server = served(trained, tmp_path / f"serve-{cycle + 1}.log").wait_ready()
            missing = [offset + i for i in range(BURST)
                       if 15 + (offset + i) / 4 not in set(stored_by_bmi(trained)["bmi"])]
            send_burst(server.url, missing, {})
            after = stored_by_bmi(trained)
            assert len(after) == base + BURST  # the count of a clean burst
            assert not after["bmi"].duplicated().any()
    finally:
        server.stop()
    assert kills == KILLED_BURSTS
    table_state(trained)
    print(f"\nburst: {kills} kills; {cut_off_stored} cut-off request(s) had been stored before the kill")
