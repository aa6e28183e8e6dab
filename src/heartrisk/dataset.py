"""Getting the Kaggle CSV and reading it into typed, checked columns.

The file comes from ``--csv``, ``HEARTRISK_CSV`` or a download through kagglehub (checked against the
sha256 in DESIGN.md and cached under the home). Reading never guesses: every problem names the file,
the line, the column and the value.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import BY_COLUMN, KAGGLE_COLUMNS, LABEL
from heartrisk.validation import Coerced, Problem, coerce

KAGGLE_HANDLE = "kamilpytlak/personal-key-indicators-of-heart-disease"
KAGGLE_FILE = "2020/heart_2020_cleaned.csv"
KAGGLE_SHA256 = "90a1e2e8bdcb4aba54314a41d35d2ac3be4763e459df33951e08e415f527f5a8"
CACHED_NAME = "heart_2020_cleaned.csv"
#: Data starts on line 2 of the file (line 1 is the header).
FIRST_DATA_LINE = 2


class DatasetError(RuntimeError):
    """The data file cannot be obtained or read; the message says which file and what to do."""


@dataclass
class KaggleCsv:
    """A parsed Kaggle-format file: typed columns, the problems found and the file's sha256."""

    path: Path
    sha256: str
    coerced: Coerced

    @property
    def frame(self) -> pd.DataFrame:
        return self.coerced.frame


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed so a large file costs no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def locate_csv(settings: Settings, csv_path: Path | None = None) -> Path:
    """The file to ingest: ``--csv``, else ``HEARTRISK_CSV``, else the cached or downloaded file."""
    chosen = csv_path or settings.csv
    if chosen is not None:
        if not Path(chosen).is_file():
            source = "--csv" if csv_path else "HEARTRISK_CSV"
            raise DatasetError(f"{source}: {chosen} is not a file")
        return Path(chosen)
    return download(settings)


def download(settings: Settings) -> Path:
    """Download the Kaggle file once (kagglehub), check its sha256 and keep it under the home."""
    cached = settings.cache_dir / CACHED_NAME
    if cached.is_file() and file_sha256(cached) == KAGGLE_SHA256:
        return cached
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        import kagglehub

        fetched = Path(kagglehub.dataset_download(KAGGLE_HANDLE, path=KAGGLE_FILE))
    except Exception as exc:
        raise DatasetError(
            f"could not download {KAGGLE_HANDLE} from Kaggle ({type(exc).__name__}); "
            "offline? set HEARTRISK_CSV=/path/to/heart_2020_cleaned.csv (.csv, .csv.gz or .zip)"
        ) from None
    digest = file_sha256(fetched)
    if digest != KAGGLE_SHA256:
        raise DatasetError(
            f"{fetched}: sha256 {digest} differs from the expected {KAGGLE_SHA256}; "
            "the download is damaged or Kaggle changed the file"
        )
    shutil.copyfile(fetched, cached)
    return cached


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """Open a .csv, .csv.gz or a .zip holding one .csv, as UTF-8 text."""
    name = path.name.lower()
    if name.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise DatasetError(f"{path}: not a valid zip file") from None
        with archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise DatasetError(f"{path}: expected one .csv inside the zip, found {members}")
            with archive.open(members[0]) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    elif name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
            yield handle
    else:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield handle


def read_kaggle_csv(
    path: Path,
    label: Literal["required", "optional"] = "required",
    on_rows: Callable[[int], None] | None = None,
) -> KaggleCsv:
    """Read and check a Kaggle-format file. Structural faults (header, encoding, compression) raise
    :class:`DatasetError`; bad cells are returned as problems for the caller to judge.
    ``on_rows(n)`` is called as chunks of rows are read, for a progress bar."""
    raw = _read_cells(Path(path), label, on_rows)
    coerced = coerce(raw, naming="column", label=label)
    short = raw.isna().to_numpy()  # na_filter is off: NaN only where a line had too few fields
    if short.any():
        rows, cols = short.nonzero()
        coerced.problems.extend(
            Problem(int(r), str(raw.columns[c]), None, "is missing: the line has too few fields")
            for r, c in zip(rows, cols, strict=True)
        )
        coerced.problems.sort(key=lambda p: (p.row, p.column))
    return KaggleCsv(Path(path), file_sha256(path), coerced)


def _read_cells(path: Path, label: str, on_rows: Callable[[int], None] | None) -> pd.DataFrame:
    try:
        with _open_text(path) as handle:
            header = _check_header(path, handle.readline(), label)
            chunks = []
            reader = pd.read_csv(handle, header=None, names=header, dtype=str, chunksize=50_000,
                                 keep_default_na=False, na_filter=False, engine="c")
            for chunk in reader:
                chunks.append(chunk)
                if on_rows:
                    on_rows(len(chunk))
            cells = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=header)
    except DatasetError:
        raise
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: damaged or truncated compressed file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file has a header but no rows") from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: not a well-formed CSV file: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    if cells.empty:
        raise DatasetError(f"{path}: the file has a header but no rows")
    return cells


def _check_header(path: Path, line: str, label: str) -> list[str]:
    if not line.strip():
        raise DatasetError(f"{path}: the file is empty (expected a header line with "
                           f"{', '.join(KAGGLE_COLUMNS)})")
    header = [c.strip() for c in next(csv.reader([line]))]
    expected = set(KAGGLE_COLUMNS) - ({LABEL.column} if label == "optional" else set())
    missing = [c for c in KAGGLE_COLUMNS if c in expected and c not in header]
    extra = [c for c in header if c not in BY_COLUMN]
    twice = sorted({c for c in header if header.count(c) > 1})
    if missing or extra or twice:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(repr(c) for c in extra)}")
        if twice:
            parts.append(f"repeated column(s) {', '.join(twice)}")
        raise DatasetError(f"{path}, line 1 (header): " + "; ".join(parts)
                           + f". Expected: {', '.join(KAGGLE_COLUMNS)}")
    return header
