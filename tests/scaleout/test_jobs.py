"""Jobs from two machines at once on the shared S3 store: `daily` and `infer` end in the state of one
clean run, two maintainers do not double a table; a store that ignores conditional writes is refused."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, HEART_USER, open_group
from heartrisk.store.objects import open_objects
from heartrisk.store.probe import conditional_writes_work
from support.cluster import Cluster
from support.race import at_once
from support.reliability import REPO
from support.servers import HeaderStrippingProxy, create_bucket
from support.web import ANSWERS

pytestmark = pytest.mark.scaleout


def both(cluster: Cluster, args: list[str], machines: list[Settings]) -> list[subprocess.CompletedProcess]:
    """The same command on each machine, started together."""
    running = [subprocess.Popen([sys.executable, "-m", "heartrisk", *args], env=cluster.env(m), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for m in machines]
    done = []
    for process in running:
        out, err = process.communicate(timeout=900)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def test_two_daily_and_two_infer_runs_at_once_leave_one_clean_run(cluster: Cluster) -> None:
    a, b = cluster.machine("cron-a"), cluster.machine("cron-b")
    # distinct answers: more than a few identical submissions a day are quarantined, not merged
    pending = [add_submission(cluster.first, {**ANSWERS, "sleep_time": float(1 + i % 24), "bmi": 20.0 + i},
                              i % 2 == 0) for i in range(30)]
    heart = open_group(cluster.first, HEART)
    before = heart.read(columns=["record_id", "source"])

    daily = both(cluster, ["daily", "--synthetic", "40"], [a, b])
    codes = sorted(run.returncode for run in daily)
    assert codes == [0, 2], [(r.returncode, r.stdout[-500:], r.stderr[-800:]) for r in daily]
    refused = next(r for r in daily if r.returncode == 2)
    assert "lease 'job-daily'" in refused.stderr and "held by job 'daily' on" in refused.stderr
    assert "UTC" in refused.stderr and "Traceback" not in refused.stderr

    after = heart.read(columns=["record_id", "source"])
    assert after["record_id"].is_unique
    added = after[~after["record_id"].isin(before["record_id"])]
    assert added["source"].value_counts().to_dict() == {"synthetic": 40, "user": 30}
    assert set(added.loc[added["source"] == "user", "record_id"]) == {f"user:{s}" for s in pending}

    infer = both(cluster, ["infer", "--hours", str(24 * 365 * 10)], [a, b])
    assert sorted(run.returncode for run in infer)[0] == 0, [r.stderr[-800:] for r in infer]
    for run in infer:
        assert run.returncode == 0 or "lease 'job-infer'" in run.stderr, run.stderr[-800:]
    predictions = open_group(cluster.first, HEART_PREDICTIONS).read(columns=["record_id", "model_version"])
    assert not predictions.duplicated().any()
    assert set(predictions["record_id"]) == set(after["record_id"])


def _maintain(home: str, store: str, mlflow: str) -> int:
    group = open_group(Settings(home=Path(home), store_uri=store, mlflow_uri=mlflow), HEART_USER)
    return int(group.maintain()["compacted"].get("numFilesRemoved") or 0)


def test_two_maintainers_at_once_do_not_double_a_table(cluster: Cluster) -> None:
    for _ in range(12):  # a dozen one-row commits: small files to compact
        add_submission(cluster.first, ANSWERS, False)
    group = open_group(cluster.first, HEART_USER)
    rows = group.count()
    machines = [cluster.machine(f"maintainer-{i}") for i in range(2)]
    results = at_once(_maintain, [(str(m.home), cluster.store_uri, cluster.mlflow) for m in machines])
    assert [kind for kind, _ in results] == ["ok", "ok"], results
    ids = group.read(columns=["submission_id"])["submission_id"]
    assert len(ids) == rows and ids.is_unique
    assert sorted(value for _, value in results)[0] == 0  # the second found nothing left to compact


def _append(uri: str, endpoint: str, worker: int, commits: int) -> int:
    """delta-rs appends as they were before issue 15's probe: one row per commit."""
    import os

    import pyarrow as pa
    from deltalake import write_deltalake

    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for i in range(commits):
        write_deltalake(uri, pa.table({"k": [f"{worker}-{i}"]}), mode="append")
    return commits


def test_a_store_that_ignores_conditional_writes_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    bucket = f"unsafe-{uuid.uuid4().hex[:8]}"
    create_bucket(cluster.s3, bucket)
    port = int(cluster.s3.rsplit(":", 1)[1])
    proxy = HeaderStrippingProxy(port)
    try:
        assert conditional_writes_work(open_objects(f"s3://{bucket}/direct"))  # moto itself honours them
        # What such a store does to concurrent writers: acknowledged commits overwrite each other.
        lost = f"s3://{bucket}/lost"
        write_deltalake(lost, pa.table({"k": ["seed"]}))
        done = at_once(_append, [(lost, proxy.url, w, 10) for w in range(4)], lead_s=5)
        acknowledged = sum(value for kind, value in done if kind == "ok")
        assert DeltaTable(lost).to_pyarrow_table().num_rows - 1 < acknowledged == 40
        machine = cluster.machine("unsafe", store_uri=f"s3://{bucket}/store")
        env = cluster.env(machine, AWS_ENDPOINT_URL=proxy.url)
        run = subprocess.run([sys.executable, "-m", "heartrisk", "daily", "--synthetic", "0"], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stdout + run.stderr
        assert "ignores conditional writes" in run.stderr and "HEARTRISK_SINGLE_WRITER=1" in run.stderr
        assert "MinIO" in run.stderr and "Traceback" not in run.stderr
        import boto3

        s3 = boto3.client("s3", endpoint_url=cluster.s3)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="store/").get("Contents", [])]
        assert not [k for k in keys if "_delta_log" in k or k.endswith(".parquet")], keys

        single = subprocess.run([sys.executable, "-m", "heartrisk", "daily", "--synthetic", "0"],
                                env={**env, "HEARTRISK_SINGLE_WRITER": "1"}, cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert single.returncode == 0, single.stdout + single.stderr
    finally:
        proxy.stop()
