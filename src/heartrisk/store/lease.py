"""Leases every machine sharing the store sees: one holder at a time, expiring if the holder dies.

A file lock only orders the processes of one machine. A job run from cron on two machines at once
(two ``daily`` runs merged the same 30 submissions twice; two compactions of ``heart_user`` doubled
it) needs an agreement stored where both look: here a small JSON object per lease under
``<store>/_heartrisk/leases/<name>.json`` (:mod:`heartrisk.store.objects`), holding who has it and
until when.

* **Take**: create the object if absent (conditional PUT, ``If-None-Match: *``); if it exists and has
  expired or was released, overwrite it with a compare-and-swap on the ETag read. Of two machines that
  try at once, exactly one write succeeds; the other reads the winner and waits or gives up.
* **Hold**: a heartbeat thread renews the expiry every ``ttl / 4`` with the same compare-and-swap. A
  renewal that finds someone else's tag means the lease was taken over (this holder stalled past its
  expiry): the lease is marked lost and the holder is told at the end of its run.
* **Give back**: the object is overwritten with ``released`` (never deleted: a delete followed by
  another machine's create could be overwritten by a late renewal; a compare-and-swap cannot).
* **Crash**: nothing renews, so the lease expires ``ttl`` seconds after its last renewal and the next
  runner takes it over. On the holder's own machine (same host name) a lease whose process is gone is
  free at once. ``heartrisk doctor`` lists expired leases and releases them with ``--repair``.

Expiry compares wall clocks of different machines: keep them in sync (NTP); the default time to live
(60 s) is far above the skew of a synced clock. Inserts stay duplicate-free even if a lease is lost
(they are conflict-checked MERGEs, :meth:`heartrisk.store.table.FeatureGroup.insert`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from heartrisk.errors import UserError
from heartrisk.store.objects import SYSTEM_PREFIX, ConditionFailedError, Objects

LEASES = f"{SYSTEM_PREFIX}/leases"
#: Seconds a lease lives without renewal; a crashed holder blocks others at most this long.
DEFAULT_TTL_S = 60.0
#: How often a waiting runner looks again (at most; it also wakes when the lease should expire).
POLL_S = 2.0


class LeaseBusyError(UserError, RuntimeError):
    """Someone else holds the lease and the caller would not wait (longer); the message names them."""

    def __init__(self, message: str, record: LeaseRecord) -> None:
        super().__init__(message)
        self.record = record


class LeaseLostError(UserError, RuntimeError):
    """The lease expired while held (the holder stalled) and another runner took it over."""


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object holds."""

    name: str
    owner: str  # unique per acquisition: only this holder's renewals carry it
    holder: str  # for people: what runs, where (host, pid)
    acquired_at: float
    expires_at: float
    renewed_at: float
    released: bool = False
    host: str = ""
    pid: int = 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord:
        fields = json.loads(data)
        return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})

    def free(self, now: float) -> bool:
        """Whether another runner may take it: given back, not renewed in time, or its holder's process
        is gone from this machine (a crash here need not wait for the expiry)."""
        return self.released or now >= self.expires_at or self.died_here()

    def died_here(self) -> bool:
        if not self.pid or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self, now: float) -> str:
        """``daily on host-a (pid 12) until 02:00:45 UTC (renewed 3 s ago)``."""
        until = datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.holder} until {until} (renewed {max(0.0, now - self.renewed_at):.0f} s ago)"


def lease_key(name: str) -> str:
    return f"{LEASES}/{name}.json"


def default_holder(what: str) -> str:
    return f"{what} on {socket.gethostname()} (pid {os.getpid()})"


class Lease:
    """A lease this process holds: renew it, give it back, know whether it was lost."""

    def __init__(self, objects: Objects, record: LeaseRecord, tag: str, ttl_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.objects = objects
        self.record = record
        self.tag = tag
        self.ttl_s = ttl_s
        self.clock = clock
        self.lost = threading.Event()
        self._guard = threading.Lock()

    @property
    def name(self) -> str:
        return self.record.name

    def renew(self) -> bool:
        """Push the expiry ``ttl`` into the future; False (and :attr:`lost` set) if taken over."""
        with self._guard:
            if self.lost.is_set():
                return False
            now = self.clock()
            if now >= self.record.expires_at:  # others may already have taken it: do not extend
                self.lost.set()
                return False
            record = replace(self.record, expires_at=now + self.ttl_s, renewed_at=now)
            try:
                self.tag = self.objects.replace(lease_key(self.name), record.to_bytes(), self.tag)
            except ConditionFailedError:
                self.lost.set()
                return False
            self.record = record
            return True

    def release(self) -> None:
        """Give the lease back (a compare-and-swap: a lease already taken over is left alone)."""
        with self._guard:
            if self.lost.is_set():
                return
            now = self.clock()
            record = replace(self.record, released=True, expires_at=now, renewed_at=now)
            with contextlib.suppress(ConditionFailedError):
                self.tag = self.objects.replace(lease_key(self.name), record.to_bytes(), self.tag)
            self.record = record

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease was taken over while this process held it."""
        if self.lost.is_set():
            raise LeaseLostError(f"lost the lease '{self.name}': it was not renewed in time (the run "
                                 f"stalled for more than {self.ttl_s:g} s) and another runner took it")


def try_acquire(objects: Objects, name: str, holder: str, ttl_s: float,
                clock: Callable[[], float] = time.time) -> Lease | LeaseRecord:
    """One attempt: the :class:`Lease` if taken, else the record of whoever holds it."""
    key = lease_key(name)
    while True:
        now = clock()
        mine = LeaseRecord(name=name, owner=uuid.uuid4().hex, holder=holder, acquired_at=now,
                           expires_at=now + ttl_s, renewed_at=now, host=socket.gethostname(),
                           pid=os.getpid())
        current = objects.read(key)
        try:
            if current is None:
                return Lease(objects, mine, objects.create(key, mine.to_bytes()), ttl_s, clock)
            record = LeaseRecord.from_bytes(current.data)
            if not record.free(now):
                return record
            return Lease(objects, mine, objects.replace(key, mine.to_bytes(), current.tag), ttl_s, clock)
        except ConditionFailedError:
            continue  # another runner wrote between our read and our write: read again


def acquire(objects: Objects, name: str, holder: str, *, ttl_s: float = DEFAULT_TTL_S,
            wait_s: float = 0.0, on_wait: Callable[[str], None] | None = None,
            clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep) -> Lease:
    """Take lease ``name``, waiting up to ``wait_s`` seconds for its holder to give it back or expire.

    Raises :class:`LeaseBusyError` naming the holder and its expiry when it is still held after the
    wait; ``on_wait`` gets one message when it has to wait at all.
    """
    deadline = clock() + wait_s
    told = False
    while True:
        got = try_acquire(objects, name, holder, ttl_s, clock)
        if isinstance(got, Lease):
            return got
        now = clock()
        if now >= deadline:
            waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
            raise LeaseBusyError(f"the lease '{name}' in {objects.where} is held by {got.describe(now)}"
                                 f"{waited}; it is released when that run ends, or expires if it died",
                                 got)
        if on_wait is not None and not told:
            on_wait(f"waiting for the lease '{name}': held by {got.describe(now)}")
            told = True
        sleep(max(0.05, min(POLL_S, deadline - now, got.expires_at - now + 0.05)))


class Heartbeat:
    """Renews a lease every ``ttl / 4`` seconds in a daemon thread until stopped."""

    def __init__(self, lease: Lease, every_s: float | None = None) -> None:
        self.lease = lease
        self.every_s = every_s if every_s is not None else lease.ttl_s / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.name}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self.every_s * 2))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if not self.lease.renew():
                    return
            except Exception:  # a network error: try again at the next beat, the expiry decides
                if self.lease.clock() >= self.lease.record.expires_at:
                    self.lease.lost.set()
                    return


@contextlib.contextmanager
def held(objects: Objects, name: str, holder: str, *, ttl_s: float = DEFAULT_TTL_S,
         wait_s: float = 0.0, on_wait: Callable[[str], None] | None = None) -> Iterator[Lease]:
    """Hold lease ``name`` for the block (renewed by a heartbeat), give it back after.

    A lease lost during the block raises :class:`LeaseLostError` at its end, so the run is recorded as
    failed rather than silently overlapping another."""
    lease = acquire(objects, name, holder, ttl_s=ttl_s, wait_s=wait_s, on_wait=on_wait)
    beat = Heartbeat(lease).start()
    try:
        yield lease
    finally:
        beat.stop()
        lease.release()
    lease.check()


def read_leases(objects: Objects) -> list[tuple[LeaseRecord, str]]:
    """Every lease object in the store with its tag (for ``heartrisk status`` and ``doctor``)."""
    found = []
    for key in objects.keys(LEASES):
        stored = objects.read(key)
        if stored is None or not key.endswith(".json"):
            continue
        with contextlib.suppress(ValueError, TypeError, KeyError):
            found.append((LeaseRecord.from_bytes(stored.data), stored.tag))
    return found


def clear_expired(objects: Objects, record: LeaseRecord, tag: str, now: float | None = None) -> bool:
    """Mark an expired lease released (``doctor --repair``); False if it changed meanwhile."""
    now = time.time() if now is None else now
    if record.released or now < record.expires_at:
        return False
    try:
        objects.replace(lease_key(record.name), replace(record, released=True).to_bytes(), tag)
    except ConditionFailedError:
        return False
    return True
