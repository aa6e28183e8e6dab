"""Leases and conditional writes on a real S3 server (moto), through obstore, as every machine sees them."""

from __future__ import annotations

import uuid

import pytest

from heartrisk.store.lease import LeaseBusyError, LeaseRecord, acquire, try_acquire
from heartrisk.store.objects import ConditionFailedError, S3Objects, open_objects
from support.cluster import Cluster
from support.race import at_once

pytestmark = pytest.mark.scaleout


def _take(root: str, holder: str) -> str:
    got = try_acquire(open_objects(root), "job-daily", holder, 60.0)
    return "won" if not isinstance(got, LeaseRecord) else f"lost to {got.holder}"


def test_s3_refuses_a_second_create_and_a_stale_replace(cluster: Cluster) -> None:
    objects = open_objects(f"s3://{cluster.bucket}/leases-{uuid.uuid4().hex[:6]}")
    assert isinstance(objects, S3Objects)
    tag = objects.create("k.json", b"one")
    with pytest.raises(ConditionFailedError):
        objects.create("k.json", b"two")
    objects.replace("k.json", b"three", tag)
    with pytest.raises(ConditionFailedError):
        objects.replace("k.json", b"four", tag)
    assert objects.read("k.json").data == b"three"


def test_of_four_machines_taking_one_lease_on_s3_exactly_one_wins(cluster: Cluster) -> None:
    for round_ in range(3):
        root = f"s3://{cluster.bucket}/race-{round_}-{uuid.uuid4().hex[:6]}"
        results = at_once(_take, [(root, f"machine-{i}") for i in range(4)], lead_s=5)
        assert all(kind == "ok" for kind, _ in results), results
        assert [value for _, value in results].count("won") == 1, results


def test_a_busy_lease_on_s3_names_its_holder(cluster: Cluster) -> None:
    objects = open_objects(f"s3://{cluster.bucket}/busy-{uuid.uuid4().hex[:6]}")
    acquire(objects, "job-infer", "job 'infer' on host-a (pid 7)", ttl_s=60)
    with pytest.raises(LeaseBusyError, match=r"held by job 'infer' on host-a \(pid 7\) until .* UTC"):
        acquire(objects, "job-infer", "b", ttl_s=60)
