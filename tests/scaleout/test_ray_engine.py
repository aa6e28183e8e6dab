"""`heartrisk infer` on a local Ray cluster (loopback, two worker nodes) against the local engine.

The command runs as users run it, with one setting (``HEARTRISK_RAY_ADDRESS``): Daft sends the scoring
to the Ray workers, which read the store and load the model themselves. It must store exactly what the
local engine stores; a Ray worker killed while the run scores leaves no partial commit, and a re-run
ends in the state of a clean run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import write_deltalake

from heartrisk.config import Settings
from heartrisk.jobs.infer import run_infer
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
from support.ray_cluster import RayCluster
from support.reliability import cli_env

pytest.importorskip("daft")
pytest.importorskip("ray")
pytestmark = pytest.mark.scaleout
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cluster = RayCluster(tmp_path_factory.mktemp("ray") / "ray.log", workers=2, env=env)
    try:
        yield cluster
    finally:
        cluster.stop()


def grown(settings: Settings, copies: int) -> None:
    """``heart`` holding its rows ``copies`` times (fresh record ids), so a run scores many batches."""
    heart = open_group(settings, HEART)
    base = heart.read_arrow()
    for copy in range(1, copies):
        ids = pc.binary_join_element_wise(base.column("record_id"), pa.scalar(f"c{copy}"), ":")
        write_deltalake(heart.uri, base.set_column(0, "record_id", ids), mode="append")


RUNS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_run_left() -> Iterator[None]:
    """A run still going when the test stops (a timeout, a failed assertion) is killed."""
    yield
    while RUNS:
        run = RUNS.pop()
        if run.poll() is None:
            run.kill()
            run.wait()


def infer_cli(settings: Settings, address: str, now_hours: int = 48, **extra: str) -> subprocess.Popen:
    run = subprocess.Popen(
        [sys.executable, "-m", "heartrisk", "infer", "--hours", str(now_hours), "--ray-address", address],
        env=cli_env(settings, HEARTRISK_ENGINE_BATCH_ROWS="2000", **extra), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    RUNS.append(run)
    return run


def stored(settings: Settings) -> pd.DataFrame:
    frame = open_group(settings, HEART_PREDICTIONS).read()
    return frame.drop(columns=["predicted_at"]).sort_values("record_id").reset_index(drop=True)


@pytest.mark.timeout(2400)  # three CLI runs on Ray: 10 min were not enough at a load average of 24
def test_ray_workers_score_like_the_local_engine_and_a_killed_worker_commits_nothing(
        trained: Settings, tmp_path: Path, ray_cluster: RayCluster) -> None:
    grown(trained, 4)  # 24,000 rows: 12 batches of 2,000
    killed_home = tmp_path / "killed"
    shutil.copytree(trained.home, killed_home)
    killed = trained.model_copy(update={"home": killed_home})
    ray_home = tmp_path / "ray"
    shutil.copytree(trained.home, ray_home)
    on_ray = trained.model_copy(update={"home": ray_home})

    # The local engine, in this process: the reference.
    local = run_infer(trained, hours=48, artifacts=False)
    assert local.inserted == 24_000

    # The same on Ray, as a user runs it.
    run = infer_cli(on_ray, ray_cluster.address)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    assert "scored 24,000 new rows" in output
    pd.testing.assert_frame_equal(stored(on_ray), stored(trained))

    # A worker killed while the run scores: nothing committed, and a re-run is a clean run.
    before = open_group(killed, HEART_PREDICTIONS).exists()
    run = infer_cli(killed, ray_cluster.address)
    victim = wait_for_scoring_worker(ray_cluster, run)
    os.kill(victim, signal.SIGKILL)
    output, _ = run.communicate(timeout=900)
    predictions = open_group(killed, HEART_PREDICTIONS)
    if run.returncode != 0:  # the run gave up: not one row of it stored
        assert not before and (not predictions.exists() or predictions.count() == 0), output
    else:  # Ray ran the lost work again: the run is whole, each row once
        assert predictions.count() == 24_000, output
    again = infer_cli(killed, ray_cluster.address)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    pd.testing.assert_frame_equal(stored(killed), stored(trained))
    assert not open_group(killed, HEART_PREDICTIONS).duplicate_keys().num_rows


def wait_for_scoring_worker(cluster: RayCluster, run: subprocess.Popen, timeout: float = 600) -> int:
    """The pid of a Ray worker running Daft's work for this run, once one is busy (CPU time moving)."""
    deadline = time.monotonic() + timeout
    seen: dict[int, float] = {}
    while time.monotonic() < deadline:
        if run.poll() is not None:
            pytest.fail(f"the run ended before a worker could be killed:\n{run.stdout.read()}")
        for pid, title in cluster.worker_processes():
            if "IDLE" in title:
                continue
            cpu = cpu_seconds(pid)
            if pid in seen and cpu - seen[pid] > 0.2:
                return pid
            seen[pid] = cpu
        time.sleep(0.5)
    pytest.fail("no Ray worker started working")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

