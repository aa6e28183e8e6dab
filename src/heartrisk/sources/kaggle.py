"""Getting the Kaggle CSV and reading it into typed, checked columns.

The file comes from ``--csv``, ``HEARTRISK_CSV`` or a download through kagglehub (checked against the
sha256 in DESIGN.md and cached under the home). Reading never guesses: every problem names the file,
the line, the column and the value.
"""

from __future__ import annotations

import gzip
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
import pyarrow as pa
import pyarrow.csv as pv

from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import BY_COLUMN, KAGGLE_COLUMNS, LABEL
from heartrisk.files import sha256
from heartrisk.validation import Coerced, coerce

KAGGLE_HANDLE = "kamilpytlak/personal-key-indicators-of-heart-disease"
KAGGLE_FILE = "2020/heart_2020_cleaned.csv"
KAGGLE_SHA256 = "90a1e2e8bdcb4aba54314a41d35d2ac3be4763e459df33951e08e415f527f5a8"
CACHED_NAME = "heart_2020_cleaned.csv"
#: Data starts on line 2 of the file (line 1 is the header).
FIRST_DATA_LINE = 2


class DatasetError(UserError, RuntimeError):
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
    if cached.is_file() and sha256(cached) == KAGGLE_SHA256:
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
    digest = sha256(fetched)
    if digest != KAGGLE_SHA256:
        raise DatasetError(
            f"{fetched}: sha256 {digest} differs from the expected {KAGGLE_SHA256}; "
            "the download is damaged or Kaggle changed the file"
        )
    shutil.copyfile(fetched, cached)
    return cached


@contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    """Open a .csv, .csv.gz or a .zip holding one .csv, as a byte stream."""
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
            with archive.open(members[0]) as handle:
                yield handle
    elif name.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            yield handle
    else:
        with open(path, "rb") as handle:
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
    return KaggleCsv(Path(path), sha256(path), coerced)


def _read_cells(path: Path, label: str, on_rows: Callable[[int], None] | None) -> pd.DataFrame:
    """Every cell as a string (empty = Unknown), the whole file at once (see :func:`kaggle_blocks`)."""
    tables = []
    for table in kaggle_blocks(path, label):
        tables.append(table)
        if on_rows:
            on_rows(table.num_rows)
    return pa.concat_tables(tables).to_pandas()


def kaggle_blocks(path: Path, label: str, max_bytes: int | None = None,
                  limit_name: str = "", block_bytes: int = 1 << 22) -> Iterator[pa.Table]:
    """The file's cells as Arrow tables of strings (Kaggle column names, empty = Unknown), one block of
    about ``block_bytes`` of the file at a time: a reader that handles each block and lets it go needs
    memory for one block, whatever the file's size.

    Read by pyarrow single-threaded so that a line with the wrong number of fields can be named by its
    line number. The header is checked before the first block is given; structural faults (header,
    encoding, compression, field counts) raise :class:`DatasetError`, the field counts once the whole
    file has been seen. ``max_bytes`` caps the bytes read (uncompressed, so a small .gz cannot expand
    past it); ``limit_name`` is the setting to name when it is reached.
    """
    bad_lines: list[str] = []
    rows = 0

    def invalid_row(row: pv.InvalidRow) -> str:
        bad_lines.append(f"line {row.number}: {row.actual_columns} fields, expected {row.expected_columns}")
        return "skip"

    try:
        _check_text(path)
        with _open_binary(path) as handle:
            source = handle if max_bytes is None else _Capped(handle, max_bytes, DatasetError(
                f"{path}: holds more than {max_bytes / 1e6:g} MB uncompressed; at most "
                f"{max_bytes / 1e6:g} MB are read{f' ({limit_name})' if limit_name else ''}: "
                "split the file or raise the limit"))
            reader = pv.open_csv(
                source,
                read_options=pv.ReadOptions(use_threads=False, block_size=block_bytes),
                parse_options=pv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid_row),
                convert_options=pv.ConvertOptions(
                    column_types={c: pa.string() for c in BY_COLUMN},
                    strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            header = _check_header(path, reader.schema.names, label)
            for batch in reader:
                rows += batch.num_rows
                yield pa.Table.from_batches([batch]).select(header)
    except DatasetError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: damaged or truncated compressed file ({exc})") from None
    except pa.ArrowInvalid as exc:
        raise DatasetError(f"{path}: {_arrow_reason(exc)}") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    if bad_lines:
        more = f"; … and {len(bad_lines) - 10} more" if len(bad_lines) > 10 else ""
        shown = "; ".join(bad_lines[:10]) + more
        raise DatasetError(f"{path}: not a well-formed CSV file: {shown}")
    if rows == 0:
        raise DatasetError(f"{path}: the file has a header but no rows")


class _Capped(io.RawIOBase):
    """A byte stream that raises ``refusal`` once more than ``limit`` bytes were read (pyarrow passes
    the exception on as it is, so the reader sees the :class:`DatasetError` that names the limit)."""

    def __init__(self, inner: IO[bytes], limit: int, refusal: DatasetError) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.refusal = refusal
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self.inner.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        if self.count > self.limit:
            raise self.refusal
        return n


def _check_text(path: Path, head_bytes: int = 1 << 16) -> None:
    """Refuse binary files early with a plain message (pyarrow's would quote the garbage)."""
    with _open_binary(path) as handle:
        head = handle.read(head_bytes)
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DatasetError(f"{path}: binary data (a NUL byte at {nul}), not a CSV text file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut in half at the end of the peek
            raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _arrow_reason(exc: pa.ArrowInvalid) -> str:
    text = str(exc)[:300].encode("ascii", "backslashreplace").decode()
    if "Empty CSV file" in text:
        return f"the file is empty (expected a header line with {', '.join(KAGGLE_COLUMNS)})"
    if "UTF8" in text:
        return f"not UTF-8 text ({text})"
    return f"not a well-formed CSV file ({text})"


def _check_header(path: Path, names: list[str], label: str) -> list[str]:
    header = list(names)
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
