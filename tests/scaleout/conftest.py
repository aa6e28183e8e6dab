"""Several machines on one shared store and one MLflow server, all real, all on 127.0.0.1.

A session starts moto's S3 server, redis-server and an ``mlflow server`` (SQLite, artifacts on that
S3), ingests the 6,000-row sample into ``s3://…/store``, trains a quick classifier and a quick
synthesizer through the server. Each "machine" is then a home folder of its own (own locks, caches,
jobs.json) with the same ``HEARTRISK_STORE_URI`` and ``MLFLOW_TRACKING_URI``: what a cron job or a
``serve`` replica on another host would have. The S3 settings are in this process's environment
(delta-rs, obstore and boto3 read them) and in every child's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from heartrisk.config import Settings
from support.cluster import Cluster
from support.servers import Child, create_bucket, mlflow_server, moto_server, redis_server, s3_env


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, sample_csv: Path) -> Iterator[Cluster]:
    from heartrisk.jobs.ingest import ingest
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.jobs.train import TrainSettings, train
    from heartrisk.synth.fit import SynthSettings

    root = tmp_path_factory.mktemp("cluster")
    children: list[Child] = []
    saved = {k: os.environ.get(k) for k in (*s3_env("x"), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    try:
        s3 = moto_server(root / "moto.log")
        children.append(s3)
        os.environ.update({**s3_env(s3.url), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
        bucket, artifacts = f"heartrisk-{uuid.uuid4().hex[:8]}", f"mlflow-{uuid.uuid4().hex[:8]}"
        create_bucket(s3.url, bucket)
        create_bucket(s3.url, artifacts)
        server = mlflow_server(root / "mlflow.log", root / "mlflow.db", f"s3://{artifacts}/artifacts",
                               s3.url, dict(os.environ))
        children.append(server)
        redis = redis_server(root / "redis.log", root)
        children.append(redis)
        first = Settings(home=root / "machine-a", store_uri=f"s3://{bucket}/store", mlflow_uri=server.url)
        ingest(first, sample_csv)
        train(first, TrainSettings.for_quick())
        train_synthesizer(first, SynthSettings.quick())
        yield Cluster(root=root, s3=s3.url, bucket=bucket, mlflow=server.url, first=first,
                      redis=f"redis://127.0.0.1:{redis.port}/0")
    finally:
        for child in reversed(children):
            child.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
