"""A Daft data source over one version of a feature group's Delta table: one task per data file.

Why not ``daft.read_deltalake``: it reads the Parquet files with Daft's native reader, which takes each
file's column types from the Arrow schema stored in the file, and delta-rs (1.6.6) writes the files of
a MERGE, a DELETE or a compaction with ``string_view`` columns, which Daft 0.7.26 refuses ("Unsupported
Arrow DataType: Utf8View"). Every insert of this store is a MERGE, so Daft could read none of our
tables. Here the driver lists the files of the version with delta-rs (its statistics prune the files
outside an event-time window), and each task, on whichever worker runs it, reads its file with
pyarrow, typed to the group's schema like every other read of the store
(:meth:`heartrisk.store.table.FeatureGroup.read_arrow`).

Workers reach ``s3://`` through pyarrow's S3 client, with the endpoint and keys of the ``AWS_*``
variables (the same ones delta-rs and obstore read): each worker needs them in its environment.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from daft.io.source import DataSource, DataSourceTask
from daft.recordbatch import RecordBatch
from daft.schema import Schema
from deltalake import DeltaTable

from heartrisk.store.table import FeatureGroup

#: The row locator column a located read adds: the file's index in the snapshot (high 32 bits) and
#: the row's position in that file (low 32 bits), so a later read can pick exactly those rows.
ROW = "__row"


#: Rows a task decodes at once. A pyarrow dataset scan decodes a whole row group (delta-rs wrote the
#: dev table's 288k rows as one) and Daft's native runner reads up to 8 files at once, so the scoring
#: plan's peak grew with the number of files: +310 MiB from 1x to 4x. ``ParquetFile.iter_batches``
#: decodes this many rows at a time (four files read in turn: +76 MiB at 4,096 rows, +145 at 32,768,
#: +314 at 131,072, the dataset's default).
READ_BATCH_ROWS = 8_192


def read_group(group: FeatureGroup, columns: Sequence[str], start: datetime | None = None,
               end: datetime | None = None, version: int | None = None) -> Any:
    """A Daft DataFrame of ``columns`` of the group's rows (event time in ``[start, end)`` if given)."""
    return snapshot(group, start, end, version).read(columns)


def snapshot(group: FeatureGroup, start: datetime | None = None, end: datetime | None = None,
             version: int | None = None) -> Snapshot:
    """The data files of one version of the group that may hold rows of ``[start, end)``."""
    table = group.table(version)
    paths, rows = _files_in_window(table, group.spec.time_column, start, end)
    return Snapshot(uri=group.uri, version=table.version(), schema=group.spec.schema,
                    time_column=group.spec.time_column, start=start, end=end, files=tuple(paths),
                    file_rows=tuple(rows))


@dataclass(frozen=True)
class Snapshot:
    """The files of one table version in a window, in a fixed order: reads of one snapshot see the
    same rows at the same places, so a first read can locate rows (:data:`ROW`) and a second one
    read exactly those."""

    uri: str
    version: int
    schema: pa.Schema
    time_column: str
    start: datetime | None
    end: datetime | None
    files: tuple[str, ...]
    file_rows: tuple[int, ...]   # rows per file from the Delta log (the whole file, not the window)

    @property
    def rows(self) -> int:
        """Rows in the snapshot's files: an upper bound of the window's rows, known without a read."""
        return sum(self.file_rows)

    def read(self, columns: Sequence[str], *, locate: bool = False,
             keep: dict[int, bytes] | None = None) -> Any:
        """A Daft DataFrame of ``columns`` of the window's rows, with :data:`ROW` when ``locate``;
        with ``keep`` (file index -> packed bits, one per row of that file) only the rows set there,
        and files without one are not read at all."""
        return SnapshotSource(self, tuple(columns), locate, keep).read()


class SnapshotSource(DataSource):
    """The data files of a snapshot, each read by a task of its own."""

    def __init__(self, snap: Snapshot, columns: tuple[str, ...], locate: bool,
                 keep: dict[int, bytes] | None) -> None:
        self.snap, self.locate, self.keep = snap, locate, keep
        fields = [snap.schema.field(c) for c in columns]
        self.arrow_schema = pa.schema([*fields, pa.field(ROW, pa.int64())] if locate else fields)

    @property
    def name(self) -> str:
        return f"GroupFiles({self.snap.uri}@{self.snap.version})"

    @property
    def schema(self) -> Schema:
        return Schema.from_pyarrow_schema(self.arrow_schema)

    async def get_tasks(self, pushdowns: Any) -> AsyncIterator[DataSourceTask]:
        snap = self.snap
        for index, path in enumerate(snap.files):
            if self.keep is not None and index not in self.keep:
                continue
            yield FileTask(f"{snap.uri.rstrip('/')}/{path}", index, self.arrow_schema, snap.schema,
                           snap.time_column, snap.start, snap.end,
                           None if self.keep is None else self.keep[index])


@dataclass
class FileTask(DataSourceTask):
    """One Parquet file read with pyarrow, cast to the group's types, filtered to the window (and to
    the kept rows, if given), a record batch at a time."""

    path: str
    index: int
    arrow_schema: pa.Schema
    group_schema: pa.Schema
    time_column: str
    start: datetime | None
    end: datetime | None
    keep: bytes | None = None

    @property
    def schema(self) -> Schema:
        return Schema.from_pyarrow_schema(self.arrow_schema)

    async def read(self) -> AsyncIterator[RecordBatch]:
        filesystem, path = _filesystem(self.path)
        parquet = pq.ParquetFile(path, filesystem=filesystem)
        names = set(parquet.schema_arrow.names)
        wanted = [f.name for f in self.arrow_schema if f.name != ROW]
        timed = self.time_column in names and (self.start is not None or self.end is not None)
        reads = [n for n in wanted if n in names]
        if timed and self.time_column not in reads:
            reads.append(self.time_column)
        # Typed to the schema (string_view files read as string, as the store reads them).
        typed = pa.schema([self.group_schema.field(n) for n in reads])
        kept = None if self.keep is None else np.unpackbits(np.frombuffer(self.keep, np.uint8)).astype(bool)
        offset = 0
        # In file order, unfiltered, so a row's position is its place in the file; a few thousand rows
        # decoded at a time (see READ_BATCH_ROWS).
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=reads, use_threads=False):
            rows = batch.num_rows
            table = pa.Table.from_batches([batch]).select(reads).cast(typed)
            mask = _in_window(table, self.time_column, self.start, self.end) if timed else None
            if kept is not None:
                mine = pa.array(kept[offset:offset + rows])
                mask = mine if mask is None else pc.and_(mask, mine)
            if ROW in self.arrow_schema.names:
                table = table.append_column(ROW, pa.array(
                    (self.index << 32) + np.arange(offset, offset + rows, dtype=np.int64)))
            offset += rows
            if mask is not None:
                table = table.filter(mask)
            if table.num_rows:
                for name in wanted:
                    if name not in names:  # a column added to the schema after this file was written
                        table = table.append_column(name, pa.nulls(table.num_rows))
                yield RecordBatch.from_arrow_table(table.select(self.arrow_schema.names)
                                                   .cast(self.arrow_schema))


def _in_window(table: pa.Table, time_column: str, start: datetime | None,
               end: datetime | None) -> pa.Array:
    times = table.column(time_column)
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if start is not None:
        mask = pc.and_kleene(mask, pc.greater_equal(times, pa.scalar(start, times.type)))
    if end is not None:
        mask = pc.and_kleene(mask, pc.less(times, pa.scalar(end, times.type)))
    return pc.fill_null(mask, False)


def _files_in_window(table: DeltaTable, time_column: str, start: datetime | None,
                     end: datetime | None) -> tuple[list[str], list[int]]:
    """Data files of the version whose event-time statistics overlap the window (all without one),
    and the rows each holds (from the log's statistics)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    rows = (actions.column("num_records").to_pylist() if "num_records" in actions.column_names
            else [0] * len(paths))
    rows = [int(r or 0) for r in rows]
    lows, highs = (f"min.{time_column}", f"max.{time_column}")
    if (start is None and end is None) or lows not in actions.column_names \
            or highs not in actions.column_names:
        return paths, rows
    keep = pa.array([True] * len(paths), pa.bool_())
    if start is not None:
        keep = pc.and_kleene(keep, pc.fill_null(pc.greater_equal(actions.column(highs), _at(start)), True))
    if end is not None:
        keep = pc.and_kleene(keep, pc.fill_null(pc.less(actions.column(lows), _at(end)), True))
    chosen = [i for i, k in enumerate(keep.to_pylist()) if k]
    return [paths[i] for i in chosen], [rows[i] for i in chosen]


def _at(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment, pa.timestamp("us", tz="UTC"))


def _filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem for ``uri`` and the path in it: ``s3://`` with the ``AWS_*`` settings."""
    from pyarrow import fs

    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        options: dict[str, Any] = {"region": os.environ.get("AWS_REGION")
                                   or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
        if endpoint:
            target = urlparse(endpoint)
            options.update(endpoint_override=target.netloc, scheme=target.scheme or "https")
        if os.environ.get("AWS_ACCESS_KEY_ID"):
            options.update(access_key=os.environ["AWS_ACCESS_KEY_ID"],
                           secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                           session_token=os.environ.get("AWS_SESSION_TOKEN"))
        return fs.S3FileSystem(**options), f"{parsed.netloc}{parsed.path}"
    return fs.LocalFileSystem(), uri.removeprefix("file://")
