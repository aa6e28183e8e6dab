"""Files someone may be reading while they are written, and their checksums: the one way to do each.

:func:`atomic_write` is for every file a reader may open at any moment (the job record, monitoring
images the dashboard or MLflow serve, a cached sample, ``predict --out``): the reader sees the old
file or the new one, never half of one, even if the writer is killed. :func:`sha256` streams a file
of any size.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write to; when the block ends without an error it
    is flushed to disk and renamed over ``path`` (an atomic replace on one file system). On an error
    the temporary file is removed and ``path`` is left as it was. Creates the folder if needed.

    The temporary name is hidden (``.name.<random>.tmp``) and unique per call, so two writers of the
    same file never write into each other's; the last rename wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield partial
        descriptor = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex), streamed so a large file costs no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
