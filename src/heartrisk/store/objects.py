"""Small JSON objects beside the tables, written only when nobody else wrote first.

Leases (:mod:`heartrisk.store.lease`) and the conditional-write probe (:mod:`heartrisk.store.probe`)
need two primitives that every machine sharing the store sees the same way:

* **create**: write a key only if it does not exist (an S3 ``PUT`` with ``If-None-Match: *``);
* **replace**: overwrite a key only if it still holds what we read (``If-Match: <ETag>``),
  a compare-and-swap.

On ``s3://`` both go through ``obstore`` (the Python binding of the Rust ``object_store`` crate that
delta-rs itself uses), which sends those headers and turns a 412 into ``AlreadyExistsError`` /
``PreconditionError``; it reads the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``
for a local S3 server). Checked against moto server (docs/running.md): a second create of one key and
an update with a stale ETag are both refused.

On a local folder ``obstore`` creates with ``O_EXCL`` but does not implement the conditional update
(``NotImplementedError: PutMode::Update`` in obstore 0.12.1), so :class:`LocalObjects` does both with
the file system: for create, a hard link of a fully written file (it fails when the key exists), and
for replace a check of the content's hash and an atomic rename while holding a lock file next to the
object. A local folder is shared only by the processes that can open it (one machine, or a network
file system that honours hard links and locks).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from filelock import FileLock

from heartrisk.files import atomic_write

#: Where the store keeps its own objects (leases, the probe's scratch keys), beside the tables.
SYSTEM_PREFIX = "_heartrisk"


class ConditionFailedError(Exception):
    """A conditional write was refused: the key exists (create) or changed since it was read (replace)."""


@dataclass(frozen=True)
class Stored:
    """An object's bytes and the tag that a replace must present to overwrite exactly this content."""

    data: bytes
    tag: str


class Objects(Protocol):
    """Conditional writes of small objects under one root (``s3://bucket/prefix`` or a folder)."""

    where: str

    def create(self, key: str, data: bytes) -> str:
        """Write ``key`` if absent and return its tag, else raise :class:`ConditionFailedError`."""
        ...

    def replace(self, key: str, data: bytes, tag: str) -> str:
        """Overwrite ``key`` if its tag is still ``tag``; the new tag, else :class:`ConditionFailedError`."""
        ...

    def read(self, key: str) -> Stored | None:
        """The object and its tag, or None when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if absent). Unconditional: only for keys nobody else writes."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative to the root)."""
        ...


def open_objects(root: str) -> Objects:
    """The objects under the store root: :class:`S3Objects` for ``s3://``, else :class:`LocalObjects`."""
    if root.startswith(("s3://", "s3a://")):
        return S3Objects(root)
    return LocalObjects(Path(root.removeprefix("file://")))


class S3Objects:
    """:class:`Objects` on S3 (or an S3-compatible server) through ``obstore``."""

    def __init__(self, root: str) -> None:
        from obstore.store import from_url

        self.where = root.replace("s3a://", "s3://", 1).rstrip("/")
        self._store = from_url(self.where)

    def create(self, key: str, data: bytes) -> str:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            return str(obstore.put(self._store, key, data, mode="create")["e_tag"])
        except (AlreadyExistsError, PreconditionError) as exc:
            raise ConditionFailedError(f"{self.where}/{key} already exists") from exc

    def replace(self, key: str, data: bytes, tag: str) -> str:
        import obstore
        from obstore.exceptions import NotFoundError, PreconditionError

        try:
            return str(obstore.put(self._store, key, data, mode={"e_tag": tag})["e_tag"])
        except (PreconditionError, NotFoundError) as exc:
            raise ConditionFailedError(f"{self.where}/{key} changed since it was read") from exc

    def read(self, key: str) -> Stored | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            got = obstore.get(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return None
        return Stored(bytes(got.bytes()), str(got.meta["e_tag"]))

    def delete(self, key: str) -> None:
        import obstore
        from obstore.exceptions import NotFoundError

        with contextlib.suppress(NotFoundError, FileNotFoundError):
            obstore.delete(self._store, key)

    def keys(self, prefix: str) -> list[str]:
        import obstore

        return sorted(str(meta["path"]) for batch in obstore.list(self._store, prefix=prefix)
                      for meta in batch)


class LocalObjects:
    """:class:`Objects` in a folder: ``O_EXCL`` creates, hash-checked replaces under a lock file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def create(self, key: str, data: bytes) -> str:
        """Written whole to a private file first, then hard-linked to the key: ``link`` fails when
        the key exists (like ``O_EXCL``) and the key appears with all its bytes. Opening the key with
        ``O_EXCL`` and writing into it let a reader (which takes no lock) see an empty or half-written
        lease (``tests/store/test_lease.py``)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        with partial.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            with self._locked(path):  # serialised with replaces of the same key
                try:
                    os.link(partial, path)
                except FileExistsError as exc:
                    raise ConditionFailedError(f"{path} already exists") from exc
        finally:
            partial.unlink(missing_ok=True)
        return _tag(data)

    def replace(self, key: str, data: bytes, tag: str) -> str:
        path = self._path(key)
        with self._locked(path):
            try:
                current = path.read_bytes()
            except FileNotFoundError as exc:
                raise ConditionFailedError(f"{path} is gone") from exc
            if _tag(current) != tag:
                raise ConditionFailedError(f"{path} changed since it was read")
            with atomic_write(path) as partial:
                partial.write_bytes(data)
        return _tag(data)

    def read(self, key: str) -> Stored | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, _tag(data))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.endswith((".lock", ".tmp")))

    @staticmethod
    def _locked(path: Path) -> FileLock:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path) + ".lock", timeout=30)


def _tag(data: bytes) -> str:
    """A local object's tag: the hash of its content (what S3's ETag is for a simple PUT)."""
    return hashlib.sha256(data).hexdigest()
