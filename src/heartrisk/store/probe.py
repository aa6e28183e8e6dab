"""Refusing a store that ignores conditional writes, before it loses a commit.

delta-rs commits to S3 by writing ``_delta_log/<version>.json`` with ``If-None-Match: *``: of two
writers racing for one version, the loser gets 412, re-reads the log and retries. An S3-compatible
server that ignores the header answers 200 to both, the second file overwrites the first, and the
first writer's rows vanish though it was told they were stored (5 of 150 acknowledged submissions in
the issue's test). Leases (:mod:`heartrisk.store.lease`) rely on the same header.

So before the first write to an ``s3://`` store a process writes one scratch key twice with a
conditional create: the second must be refused. A store that takes both is refused for writing with
:class:`UnsafeStoreError` unless the operator declares one writer (``HEARTRISK_SINGLE_WRITER=1``: one
machine, one process writing at a time, as on a laptop). Local folders are not probed: delta-rs
commits there with an atomic rename that never replaces, and leases use ``O_EXCL``.
"""

from __future__ import annotations

import threading
import uuid

from heartrisk.errors import UserError
from heartrisk.store.objects import SYSTEM_PREFIX, ConditionFailedError, Objects, open_objects

#: Stores known to honour ``If-None-Match`` on PUT (the list the refusal names).
WORKING_STORES = ("AWS S3 (since August 2024)", "MinIO", "Cloudflare R2", "Google Cloud Storage (S3 API)",
                  "a local folder")
OVERRIDE = "HEARTRISK_SINGLE_WRITER"


class UnsafeStoreError(UserError, RuntimeError):
    """The store ignores conditional writes: concurrent commits would overwrite each other."""


def conditional_writes_work(objects: Objects) -> bool:
    """Two conditional creates of one fresh scratch key: True if the second was refused."""
    key = f"{SYSTEM_PREFIX}/probe/{uuid.uuid4().hex}"
    try:
        objects.create(key, b"first")
        try:
            objects.create(key, b"second")
        except ConditionFailedError:
            return True
        return False
    finally:
        objects.delete(key)


class StoreCheck:
    """Probes each store root once per process and remembers the answer (cheap to ask again)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}
        self._lock = threading.Lock()

    def require(self, root: str, single_writer: bool = False) -> None:
        """Raise :class:`UnsafeStoreError` if ``root`` takes a second create of one key (see above)."""
        if single_writer or not root.startswith(("s3://", "s3a://")):
            return
        with self._lock:
            if root not in self._known:
                self._known[root] = conditional_writes_work(open_objects(root))
            safe = self._known[root]
        if not safe:
            raise UnsafeStoreError(
                f"the store {root} ignores conditional writes (a second PUT with If-None-Match: * of "
                f"one key was accepted), so two writers would silently overwrite each other's commits "
                f"and lose rows; nothing was written. Use a store that honours them "
                f"({', '.join(WORKING_STORES)}), or, if exactly one process ever writes to this store, "
                f"set {OVERRIDE}=1")


#: One probe per store root per process: the answer does not change while the process runs, and a
#: probe costs three requests. A cache, not a setting: the override is passed in on every call.
_CHECKED = StoreCheck()


def require_conditional_writes(root: str, single_writer: bool = False) -> None:
    """:meth:`StoreCheck.require` with this process's cache of probe results."""
    _CHECKED.require(root, single_writer)
