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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from daft.io.source import DataSource, DataSourceTask
from daft.recordbatch import RecordBatch
from daft.schema import Schema
from deltalake import DeltaTable

from heartrisk.store.table import FeatureGroup


def read_group(group: FeatureGroup, columns: Sequence[str], start: datetime | None = None,
               end: datetime | None = None, version: int | None = None) -> Any:
    """A Daft DataFrame of ``columns`` of the group's rows (event time in ``[start, end)`` if given)."""
    return GroupFiles(group, tuple(columns), start, end, version).read()


class GroupFiles(DataSource):
    """The data files of one table version, each read by a task of its own."""

    def __init__(self, group: FeatureGroup, columns: tuple[str, ...], start: datetime | None,
                 end: datetime | None, version: int | None) -> None:
        table = group.table(version)
        self.uri = group.uri
        self.version = table.version()
        self.arrow_schema = pa.schema([group.spec.schema.field(c) for c in columns])
        self.time_column = group.spec.time_column
        self.start, self.end = start, end
        self.files = _files_in_window(table, self.time_column, start, end)

    @property
    def name(self) -> str:
        return f"GroupFiles({self.uri}@{self.version})"

    @property
    def schema(self) -> Schema:
        return Schema.from_pyarrow_schema(self.arrow_schema)

    async def get_tasks(self, pushdowns: Any) -> AsyncIterator[DataSourceTask]:
        for path in self.files:
            yield FileTask(f"{self.uri.rstrip('/')}/{path}", self.arrow_schema, self.time_column,
                           self.start, self.end)


@dataclass
class FileTask(DataSourceTask):
    """One Parquet file read with pyarrow, cast to the group's types, filtered to the window."""

    path: str
    arrow_schema: pa.Schema
    time_column: str
    start: datetime | None
    end: datetime | None

    @property
    def schema(self) -> Schema:
        return Schema.from_pyarrow_schema(self.arrow_schema)

    async def read(self) -> AsyncIterator[RecordBatch]:
        filesystem, path = _filesystem(self.path)
        names = set(pads.dataset(path, format="parquet", filesystem=filesystem).schema.names)
        # Typed to the schema at the scan (string_view files read as string, as the store reads them).
        typed = pa.schema([f for f in self.arrow_schema if f.name in names])
        dataset = pads.dataset(path, format="parquet", filesystem=filesystem, schema=typed)
        where = _window(self.time_column, typed, self.start, self.end)
        for batch in dataset.to_batches(columns=typed.names, filter=where):
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                for name in self.arrow_schema.names:
                    if name not in names:  # a column added to the schema after this file was written
                        table = table.append_column(name, pa.nulls(table.num_rows))
                table = table.select(self.arrow_schema.names).cast(self.arrow_schema)
                yield RecordBatch.from_arrow_table(table)


def _files_in_window(table: DeltaTable, time_column: str, start: datetime | None,
                     end: datetime | None) -> list[str]:
    """Data files of the version whose event-time statistics overlap the window (all without one)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    if start is None and end is None:
        return paths
    lows, highs = (f"min.{time_column}", f"max.{time_column}")
    if lows not in actions.column_names or highs not in actions.column_names:
        return paths
    keep = pa.array([True] * len(paths), pa.bool_())
    if start is not None:
        keep = pc.and_kleene(keep, pc.fill_null(pc.greater_equal(actions.column(highs), _at(start)), True))
    if end is not None:
        keep = pc.and_kleene(keep, pc.fill_null(pc.less(actions.column(lows), _at(end)), True))
    return [p for p, k in zip(paths, keep.to_pylist(), strict=True) if k]


def _at(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment, pa.timestamp("us", tz="UTC"))


def _window(time_column: str, schema: pa.Schema, start: datetime | None,
            end: datetime | None) -> pc.Expression | None:
    if time_column not in schema.names:
        return None
    kind = schema.field(time_column).type
    parts = []
    if start is not None:
        parts.append(pc.field(time_column) >= pa.scalar(start, kind))
    if end is not None:
        parts.append(pc.field(time_column) < pa.scalar(end, kind))
    where = None
    for part in parts:
        where = part if where is None else where & part
    return where


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
