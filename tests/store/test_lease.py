"""Leases in the store (local folder): one holder, expiry, compare-and-swap renewal, crash, races."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from heartrisk.store.lease import (
    Heartbeat,
    LeaseBusyError,
    LeaseLostError,
    LeaseRecord,
    acquire,
    clear_expired,
    held,
    lease_key,
    read_leases,
    try_acquire,
)
from heartrisk.store.objects import ConditionFailedError, LocalObjects, open_objects
from support.clock import Clock
from support.race import at_once


def test_objects_create_once_and_replace_only_what_was_read(tmp_path: Path) -> None:
    objects = open_objects(str(tmp_path))
    assert isinstance(objects, LocalObjects)
    tag = objects.create("a/b.json", b"one")
    with pytest.raises(ConditionFailedError):
        objects.create("a/b.json", b"two")
    new = objects.replace("a/b.json", b"three", tag)
    with pytest.raises(ConditionFailedError):
        objects.replace("a/b.json", b"four", tag)  # stale tag
    stored = objects.read("a/b.json")
    assert stored is not None and (stored.data, stored.tag) == (b"three", new)
    assert objects.keys("a") == ["a/b.json"]


def test_a_held_lease_is_refused_with_its_holder_and_expiry(tmp_path: Path) -> None:
    objects, clock = open_objects(str(tmp_path)), Clock()
    first = acquire(objects, "job-daily", "daily on host-a (pid 1)", ttl_s=60, clock=clock)
    clock.now += 10
    with pytest.raises(LeaseBusyError) as refused:
        acquire(objects, "job-daily", "daily on host-b (pid 2)", ttl_s=60, clock=clock)
    message = str(refused.value)
    assert "daily on host-a (pid 1)" in message and "UTC" in message and "renewed 10 s ago" in message
    assert refused.value.record.owner == first.record.owner


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew(tmp_path: Path) -> None:
    objects, clock = open_objects(str(tmp_path)), Clock()
    old = acquire(objects, "job-infer", "old", ttl_s=30, clock=clock)
    clock.now += 31  # the holder crashed: nothing renewed it
    new = acquire(objects, "job-infer", "new", ttl_s=30, clock=clock)
    assert new.record.holder == "new"
    assert not old.renew() and old.lost.is_set()
    with pytest.raises(LeaseLostError):
        old.check()
    old.release()  # must not free the new holder's lease
    assert isinstance(try_acquire(objects, "job-infer", "third", 30, clock), LeaseRecord)


def test_renewal_keeps_it_and_release_frees_it(tmp_path: Path) -> None:
    objects, clock = open_objects(str(tmp_path)), Clock()
    lease = acquire(objects, "maintain-heart_v1", "a", ttl_s=30, clock=clock)
    clock.now += 20
    assert lease.renew()
    clock.now += 20  # 40 s after taking it, 20 s after the renewal: still held
    assert isinstance(try_acquire(objects, "maintain-heart_v1", "b", 30, clock), LeaseRecord)
    lease.release()
    assert try_acquire(objects, "maintain-heart_v1", "b", 30, clock).record.holder == "b"


def test_a_waiting_runner_gets_the_lease_when_it_expires(tmp_path: Path) -> None:
    objects, clock = open_objects(str(tmp_path)), Clock()
    acquire(objects, "job-train", "a", ttl_s=30, clock=clock)
    said: list[str] = []

    def sleep(seconds: float) -> None:
        clock.now += seconds

    lease = acquire(objects, "job-train", "b", ttl_s=30, wait_s=120, on_wait=said.append, clock=clock,
                    sleep=sleep)
    assert lease.record.holder == "b" and len(said) == 1 and "held by a" in said[0]
    assert clock.now >= 1_800_000_030.0


def test_the_heartbeat_keeps_a_short_lease_alive(tmp_path: Path) -> None:
    objects = open_objects(str(tmp_path))
    with held(objects, "job-synth", "a", ttl_s=1.0) as lease:
        time.sleep(2.5)  # longer than the time to live: only renewals keep it
        assert isinstance(try_acquire(objects, "job-synth", "b", 1.0), LeaseRecord)
        assert not lease.lost.is_set()
    assert try_acquire(objects, "job-synth", "b", 1.0).record.holder == "b"


def test_a_lease_taken_over_during_the_block_fails_the_run(tmp_path: Path) -> None:
    objects = open_objects(str(tmp_path))
    def run() -> None:
        with held(objects, "job-forget", "a", ttl_s=5.0) as lease:
            stored = objects.read(lease_key("job-forget"))
            thief = LeaseRecord("job-forget", "x", "b", 0, time.time() + 60, time.time())
            objects.replace(lease_key("job-forget"), thief.to_bytes(), stored.tag)
            Heartbeat(lease, every_s=0.05).start()
            time.sleep(0.5)

    with pytest.raises(LeaseLostError):
        run()


def test_a_lease_whose_process_died_on_this_host_is_free(tmp_path: Path) -> None:
    objects = open_objects(str(tmp_path))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead_pid = int(child.stdout)
    lease = acquire(objects, "job-daily", "a", ttl_s=600)
    stored = objects.read(lease_key("job-daily"))
    from dataclasses import replace

    objects.replace(lease_key("job-daily"), replace(lease.record, pid=dead_pid).to_bytes(), stored.tag)
    assert acquire(objects, "job-daily", "b", ttl_s=600).record.holder == "b"
    assert os.getpid() != dead_pid


def test_doctor_clears_only_expired_leases(tmp_path: Path) -> None:
    objects, clock = open_objects(str(tmp_path)), Clock()
    acquire(objects, "job-a", "a", ttl_s=30, clock=clock)
    acquire(objects, "job-b", "b", ttl_s=300, clock=clock)
    now = clock.now + 60
    found = {record.name: (record, tag) for record, tag in read_leases(objects)}
    assert set(found) == {"job-a", "job-b"}
    assert clear_expired(objects, *found["job-a"], now=now)
    assert not clear_expired(objects, *found["job-b"], now=now)
    assert LeaseRecord.from_bytes(objects.read(lease_key("job-a")).data).released


def _take(root: str, holder: str) -> str:
    got = try_acquire(open_objects(root), "job-daily", holder, 60.0)
    return "won" if not isinstance(got, LeaseRecord) else f"lost to {got.holder}"


def test_of_four_processes_taking_one_lease_at_once_exactly_one_wins(tmp_path: Path) -> None:
    for round_ in range(3):
        root = str(tmp_path / f"store{round_}")
        results = at_once(_take, [(root, f"p{i}") for i in range(4)], lead_s=4)
        assert all(kind == "ok" for kind, _ in results), results
        assert sorted(value for _, value in results).count("won") == 1, results


def test_a_reader_never_sees_a_half_written_create(tmp_path: Path) -> None:
    """A lease another process is creating is read whole or not at all (a reader that saw the empty
    file of a create in progress failed with a JSON error, the race of four processes above)."""
    objects = LocalObjects(tmp_path)
    data = os.urandom(4 << 20)  # big enough that a write takes a while
    seen: list[int] = []
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            for k in range(20):
                found = objects.read(f"race/{k}")
                if found is not None:
                    seen.append(len(found.data))

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for k in range(20):
            objects.create(f"race/{k}", data)
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) == {len(data)}, sorted(set(seen))[:5]
    assert objects.keys("race") == [f"race/{k}" for k in sorted(range(20), key=str)]
