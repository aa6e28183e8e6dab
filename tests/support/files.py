"""Looking for bytes in a folder: what a privacy test asks of a home after it is done."""

from __future__ import annotations

from pathlib import Path


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]
