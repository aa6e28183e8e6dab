"""The feature store: versioned feature groups as Delta Lake tables, and feature views over them.

A :class:`FeatureGroup` is one Delta table at ``<root>/<name>_v<version>`` (a local folder or an
``s3://`` URI, which delta-rs handles). Inserts are validated whole, de-duplicated on the group's key and
appended in one Delta commit, so a re-run adds nothing and a refused or killed write adds nothing either.
Reads can travel in time (a table version or a timestamp) and filter by event time and source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from filelock import FileLock

from heartrisk.clock import as_utc, from_millis
from heartrisk.errors import UserError
from heartrisk.validation import Coerced, Problem, ValidationError, problem_order

#: Seconds a writer waits for another writer of the same table before giving up with a clear error.
LOCK_TIMEOUT_S = 600
#: Delta's log retention property, and the value a table gets back after :meth:`FeatureGroup.purge_history`.
LOG_RETENTION = "delta.logRetentionDuration"
DEFAULT_LOG_RETENTION = "interval 30 days"


class StoreError(UserError, RuntimeError):
    """The store cannot do what was asked (missing table, lock timeout, unreadable data)."""


@dataclass(frozen=True)
class GroupSpec:
    """What a feature group holds: its schema, key, event-time column and how to check a batch."""

    name: str
    version: int
    schema: pa.Schema
    key: tuple[str, ...]
    time_column: str
    description: str = ""
    #: Spec validation of the feature/label columns (typed frame + problems), if the group has any.
    check: Callable[[pd.DataFrame], Coerced] | None = None
    #: Allowed values of the ``source`` column, if the group has one.
    sources: tuple[str, ...] = ()

    @property
    def table_name(self) -> str:
        return f"{self.name}_v{self.version}"

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


@dataclass(frozen=True)
class InsertResult:
    """What an insert did: rows written, rows skipped because their key was already there."""

    inserted: int
    skipped: int
    version: int


@dataclass
class FeatureGroup:
    """One Delta table with a fixed schema. Create it, insert into it, read it back."""

    spec: GroupSpec
    root: str
    locks_dir: Path
    storage_options: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ location and metadata
    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.spec.table_name}"

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options or None)

    def create(self) -> None:
        """Create the empty table if it is not there yet (safe to call again)."""
        if "://" not in self.uri:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not self.exists():
                DeltaTable.create(
                    self.uri, schema=self.spec.schema, name=self.spec.table_name,
                    description=self.spec.description, mode="ignore",
                    storage_options=self.storage_options or None,
                )

    def table(self, version: int | None = None, as_of: datetime | None = None) -> DeltaTable:
        """The Delta table, optionally as of a version or a time (time travel)."""
        try:
            dt = DeltaTable(self.uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            raise StoreError(
                f"feature group {self.spec.table_name} does not exist at {self.uri}; "
                "run `heartrisk ingest` first"
            ) from None
        if version is not None:
            dt.load_as_version(version)
        elif as_of is not None:
            dt.load_as_version(as_of)
        return dt

    def version(self) -> int:
        return self.table().version()

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self.table().history(limit)

    # ------------------------------------------------------------------ writes
    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """What :meth:`insert` checks, without writing: the typed batch, or the same ValidationError.

        For a caller that must refuse bad rows before it queues them for a later insert."""
        return self._checked(frame)

    def insert(self, frame: pd.DataFrame) -> InsertResult:
        """Validate the whole batch, drop rows whose key is already stored, append the rest at once.

        A batch with any bad value, or a key twice, is refused whole (``ValidationError``) and the
        table version does not move. Writers of one table queue on a file lock, so concurrent
        processes on this machine never lose a row.
        """
        batch = self._to_arrow(self._checked(frame))
        if not self.exists():
            self.create()
        with self._lock():
            dt = self.table()
            new = batch.filter(pc.invert(pc.is_in(_key_array(batch, self.spec.key),
                                                  value_set=self._stored_keys(dt))))
            skipped = batch.num_rows - new.num_rows
            if new.num_rows == 0:
                return InsertResult(0, skipped, dt.version())
            write_deltalake(dt, new, mode="append")
            return InsertResult(new.num_rows, skipped, self.table().version())

    def delete(self, predicate: str) -> int:
        """Delete rows matching a SQL predicate (one commit); returns how many were removed."""
        with self._lock():
            metrics = self.table().delete(predicate)
        return int(metrics.get("num_deleted_rows", 0))

    def maintain(self, vacuum_hours: int = 168) -> dict[str, Any]:
        """Compact small files, write a checkpoint and vacuum files no version younger than
        ``vacuum_hours`` needs. Tables fed one row at a time (``heart_user``) need this daily."""
        with self._lock():
            dt = self.table()
            compacted = dt.optimize.compact()
            dt = self.table()
            dt.create_checkpoint()
            removed = dt.vacuum(retention_hours=vacuum_hours, enforce_retention_duration=False,
                                dry_run=False)
            dt.cleanup_metadata()
        return {"compacted": compacted, "vacuumed_files": len(removed)}

    def purge_history(self) -> int:
        """Make the rows no longer in the latest version unreadable, time travel included.

        Deleting rows is not enough with Delta Lake: older versions still point at the files that hold
        them, and the commit log records each file's min/max statistics and a delete's predicate. So
        this vacuums every file the latest version does not use (retention 0), then checkpoints and
        drops the log before the checkpoint (log retention 0 for the cleanup, put back after). Safe to
        repeat. Returns the number of data files removed. Holds the table's lock throughout.
        """
        with self._lock():
            table = self.table()
            removed = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
            before = table.metadata().configuration.get(LOG_RETENTION) or DEFAULT_LOG_RETENTION
            table.alter.set_table_properties({LOG_RETENTION: "interval 0 seconds"})
            table = self.table()
            table.create_checkpoint()
            table.cleanup_metadata()
            self.table().alter.set_table_properties({LOG_RETENTION: before})
        return len(removed)

    # ------------------------------------------------------------------ reads
    def read_arrow(
        self,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        sources: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows as an Arrow table: all, or as of a version/time, in ``[start, end)``, from sources.

        Columns come typed as the group's schema, whichever types delta-rs wrote a file with."""
        return self._scan(self.table(version, as_of), columns, self._filter(start, end, sources))

    def read(self, **kwargs: Any) -> pd.DataFrame:
        """Same as :meth:`read_arrow`, as pandas (nullable features as NaN/None)."""
        return self.read_arrow(**kwargs).to_pandas()

    def count(self, **kwargs: Any) -> int:
        return self.read_arrow(columns=[self.spec.key[0]], **kwargs).num_rows

    def status(self) -> dict[str, Any]:
        """Rows, rows by source, current version and the time of the last write (for `status`)."""
        if not self.exists():
            return {"exists": False, "uri": self.uri}
        table = self.table()
        columns = ["source"] if "source" in self.spec.columns else [self.spec.key[0]]
        data = self._scan(table, columns)  # typed to the schema: files a DELETE rewrote read too
        by_source: dict[str, int] = {}
        if "source" in columns:
            counts = pc.value_counts(data.column("source")).to_pylist()
            by_source = {c["values"]: c["counts"] for c in counts}
        last = table.history(1)[0]
        return {
            "exists": True, "uri": self.uri, "rows": data.num_rows, "rows_by_source": by_source,
            "version": table.version(),
            "last_write": from_millis(last["timestamp"]).isoformat(),
            "last_operation": last.get("operation"),
        }

    def stats(self, **kwargs: Any) -> dict[str, dict[str, Any]]:
        """Per-column statistics: count, nulls, and a distribution (quantiles or value counts)."""
        frame = self.read(**kwargs)
        return {name: _column_stats(frame[name]) for name in frame.columns
                if name not in self.spec.key}

    # ------------------------------------------------------------------ internals
    def _lock(self) -> FileLock:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks_dir / f"{self.spec.table_name}.lock"), timeout=LOCK_TIMEOUT_S)

    def _stored_keys(self, dt: DeltaTable) -> pa.Array:
        stored = self._scan(dt, columns=list(self.spec.key))
        return _key_array(stored, self.spec.key)

    def _scan(self, dt: DeltaTable, columns: Sequence[str] | None = None,
              where: pc.Expression | None = None) -> pa.Table:
        """The one place rows are read from a Delta table: typed as the group's schema, whatever
        physical types its files hold (see :meth:`_column`)."""
        dataset = dt.to_pyarrow_dataset(schema=self.spec.schema)
        return dataset.to_table(columns=list(columns) if columns else None, filter=where)

    def _filter(self, start: datetime | None, end: datetime | None,
                sources: Sequence[str] | None) -> pc.Expression | None:
        time_type = self.spec.schema.field(self.spec.time_column).type
        parts = []
        if start is not None:
            parts.append(self._column(self.spec.time_column) >= pa.scalar(_utc(start), time_type))
        if end is not None:
            parts.append(self._column(self.spec.time_column) < pa.scalar(_utc(end), time_type))
        if sources is not None:
            parts.append(self._column("source").isin(list(sources)))
        expr = None
        for part in parts:
            expr = part if expr is None else expr & part
        return expr

    def _column(self, name: str) -> pc.Expression:
        """A column for a read filter, typed as the schema says whatever type a file stored it as.

        delta-rs writes the files a DELETE (or an optimize) rewrites with ``string_view`` columns
        (deltalake 1.6.6), while appends write ``string``. A filter on the bare field is checked
        against each file's statistics in that file's type, and pyarrow has no kernel comparing
        ``string`` with ``string_view``: every filtered read of a table with such a file failed, and
        after the first `heartrisk forget` so did `daily`, `synth train` and `infer`. Comparing the
        column cast to the schema's type reads every file. Text and binary columns are cast, as
        delta-rs rewrites only those; time columns keep the bare field, so files are still pruned
        by their event-time statistics (the infer window skips the old Kaggle files).
        """
        field_type = self.spec.schema.field(name).type
        if field_type in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary()):
            return pc.field(name).cast(field_type)
        return pc.field(name)

    def _checked(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The batch with typed columns, or a ValidationError naming every bad row and column."""
        expected, given = self.spec.columns, list(frame.columns)
        missing = [c for c in expected if c not in given]
        extra = [c for c in given if c not in expected]
        if missing or extra:
            problems = [Problem(None, c, None, "is missing") for c in missing]
            problems += [Problem(None, c, None, "is not a column of this group") for c in extra]
            raise ValidationError(problems, f"insert into {self.spec.table_name}")
        frame = frame.reset_index(drop=True)
        problems: list[Problem] = []
        typed = frame.copy()
        if self.spec.check is not None:
            coerced = self.spec.check(frame)
            problems += coerced.problems
            for name in coerced.frame.columns:
                typed[name] = coerced.frame[name]
        for f in self.spec.schema:
            if not f.nullable:
                for row in np.flatnonzero(frame[f.name].isna().to_numpy()):
                    problems.append(Problem(int(row), f.name, None, "is required"))
        if self.spec.sources and "source" in frame:
            bad = ~frame["source"].isin(self.spec.sources) & frame["source"].notna()
            problems += [Problem(int(i), "source", str(frame["source"].iat[i]),
                                 f"is not one of {', '.join(self.spec.sources)}")
                         for i in np.flatnonzero(bad.to_numpy())]
        keys = frame[list(self.spec.key)]
        problems += [Problem(int(i), "/".join(self.spec.key), "/".join(map(str, keys.iloc[i])),
                             "appears more than once in this batch")
                     for i in np.flatnonzero(keys.duplicated(keep="first").to_numpy())]
        if problems:
            problems.sort(key=problem_order)
            raise ValidationError(problems, f"insert into {self.spec.table_name}")
        for f in self.spec.schema:
            if pa.types.is_timestamp(f.type):
                typed[f.name] = pd.to_datetime(typed[f.name], utc=True)
        return typed

    def _to_arrow(self, frame: pd.DataFrame) -> pa.Table:
        try:
            return pa.Table.from_pandas(frame[self.spec.columns], schema=self.spec.schema,
                                        preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError([Problem(None, "?", None, f"cannot be stored: {exc}")],
                                  f"insert into {self.spec.table_name}") from None


def _key_array(table: pa.Table, key: tuple[str, ...]) -> pa.Array:
    """One string per row identifying it (composite keys joined with a unit separator)."""
    if len(key) == 1:
        return pc.cast(table.column(key[0]), pa.string()).combine_chunks()
    parts = [pc.cast(table.column(k), pa.string()) for k in key]
    return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()


def _utc(moment: datetime) -> pd.Timestamp:
    return as_utc(pd.Timestamp(moment))


def _column_stats(column: pd.Series) -> dict[str, Any]:
    stats: dict[str, Any] = {"count": int(column.notna().sum()), "nulls": int(column.isna().sum())}
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        described = column.describe(percentiles=[0.25, 0.5, 0.75])
        stats.update({k: (None if pd.isna(v) else float(v)) for k, v in described.items()
                      if k != "count"})
    elif pd.api.types.is_datetime64_any_dtype(column):
        stats.update({"min": str(column.min()), "max": str(column.max())})
    else:
        stats["values"] = {str(k): int(v) for k, v in column.value_counts().items()}
    return stats

