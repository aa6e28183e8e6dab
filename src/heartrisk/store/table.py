"""The feature store: versioned feature groups as Delta Lake tables, and feature views over them.

A :class:`FeatureGroup` is one Delta table at ``<root>/<name>_v<version>`` (a local folder or an
``s3://`` URI, which delta-rs handles). Inserts are validated whole and written as one conflict-checked
Delta MERGE on the group's key (insert when not matched), so a re-run adds nothing, a refused or killed
write adds nothing, and two writers inserting the same keys at once, on one machine or several, store
each key once. Reads can travel in time (a table version or a timestamp) and filter by event time and
source.

Why MERGE and not "read the keys, append the rest": the read-then-append is atomic only under a lock,
and a file lock holds on one machine only (two machines running ``daily`` merged the same submissions
twice). Measured with deltalake 1.6.6, two processes MERGE-ing the same 50 keys at once, 3 runs each on
a local folder and on moto S3: every time one committed and the other got ``CommitFailedError``
("a concurrent transaction added new data"), so the loser re-reads and retries here and finds the keys
stored. Appends are not checked that way (each retries on top of the other), and neither are two
compactions (both commit and the table doubles), which is why maintenance runs under a lease
(:mod:`heartrisk.store.lease`). The cost against the old append is in ``bench/insert.py``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from filelock import FileLock

from heartrisk.clock import as_utc, from_millis, utc_now
from heartrisk.errors import UserError, first_line
from heartrisk.store.lease import DEFAULT_TTL_S, default_holder, held
from heartrisk.store.objects import open_objects
from heartrisk.store.probe import require_conditional_writes
from heartrisk.validation import Coerced, Problem, ValidationError, problem_order

#: Seconds a writer waits for another writer of the same table before giving up with a clear error.
LOCK_TIMEOUT_S = 600
#: Delta's log retention property, and the value a table gets back after :meth:`FeatureGroup.purge_history`.
LOG_RETENTION = "delta.logRetentionDuration"
DEFAULT_LOG_RETENTION = "interval 30 days"
#: Table property :meth:`FeatureGroup.purge_history` sets to the time of the purge.
PURGED_AT = "heartrisk.purgedAt"
#: Commits a write attempts before giving up when other writers keep winning the race for a version.
#: Three serve replicas committing submissions at once needed at most 4 here (docs/running.md).
COMMIT_ATTEMPTS = 12
#: Reads of the latest version tried when another machine's purge removes files under them.
READ_ATTEMPTS = 5
#: Seconds a maintenance run (compaction, history purge) waits for another machine's to end.
MAINTENANCE_WAIT_S = 900.0


class StoreError(UserError, RuntimeError):
    """The store cannot do what was asked (missing table, lock timeout, unreadable data)."""


class VersionPurgedError(StoreError):
    """A version asked for by number (or time) whose log and files a history purge removed."""


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
    #: Time to live of the maintenance lease (renewed while held; see :mod:`heartrisk.store.lease`).
    lease_ttl_s: float = DEFAULT_TTL_S
    #: The operator declared one writer: write even to a store that ignores conditional writes.
    single_writer: bool = False

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
        self._require_safe_store()
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
            dt = self.reading(lambda: DeltaTable(self.uri, storage_options=self.storage_options or None))
        except TableNotFoundError:
            raise StoreError(
                f"feature group {self.spec.table_name} does not exist at {self.uri}; "
                "run `heartrisk ingest` first"
            ) from None
        if version is not None or as_of is not None:
            self._travel(dt, version if version is not None else as_of)
        return dt

    def _travel(self, dt: DeltaTable, to: int | datetime) -> None:
        """Load version (or time) ``to``, or say in one line that a purge removed it.

        A reader that pinned a version and reads it again later (train's second split) finds it gone
        once a ``forget``, on any machine, purged the history in between: delta-rs says only
        ``TableNotFoundError: No files in log segment`` of a table that exists. :meth:`reading` re-pins
        the latest version on this error; a caller outside it gets the message."""
        try:
            dt.load_as_version(to)
        except TableNotFoundError:
            what = f"version {to}" if isinstance(to, int) else f"the version as of {to.isoformat()}"
            raise VersionPurgedError(
                f"{what} of {self.spec.table_name} can no longer be read: the table's history was purged "
                "since (`heartrisk forget` does this, perhaps on another machine); run the command again "
                "to read the latest version") from None

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
        """Validate the whole batch, then store the rows whose key is not stored yet, in one commit.

        A batch with any bad value, or a key twice, is refused whole (``ValidationError``) and the
        table version does not move. The write is :meth:`insert_arrow`.
        """
        return self.insert_arrow(self._to_arrow(self._checked(frame)))

    def insert_arrow(self, batch: pa.Table) -> InsertResult:
        """Store the rows of ``batch`` whose key the table does not hold, in one conflict-checked commit.

        The public write for any engine that builds Arrow batches in the group's schema itself (already
        valid by the spec: use :meth:`check` first otherwise). It is a Delta MERGE on the key, inserting
        when not matched: if another writer, on any machine, commits between this one's read and its
        commit, delta-rs refuses the commit and it is redone on the new version, up to
        :data:`COMMIT_ATTEMPTS` times. So concurrent inserts of the same keys store each key once, with
        no lock. Writers of one machine also queue on a file lock (fewer lost races). A batch holding a
        key twice is refused (``ValidationError``); a batch whose keys are all stored commits nothing.
        """
        batch = batch.select(self.spec.columns).cast(self.spec.schema)
        self._refuse_repeated_keys(batch)
        self._require_safe_store()
        if not self.exists():
            self.create()
        if batch.num_rows == 0:
            return InsertResult(0, 0, self.version())
        return self._merge_new_keys(lambda: batch)

    def insert_stream(self, batches: Callable[[], pa.RecordBatchReader]) -> InsertResult:
        """:meth:`insert_arrow` for a batch too large for one process: the same MERGE, fed a stream.

        ``batches`` opens the stream (called again if the commit lost a race, since a stream is read
        once). delta-rs reads the source lazily (``streamed_exec``), so the rows pass through this
        process a record batch at a time and land in ONE commit: a run killed before the commit leaves
        the table as it was (only uncommitted files, which ``heartrisk doctor`` lists). The caller
        guarantees each key once in the stream (a distributed engine cannot refuse a repeated key
        before it has read them all); rows whose key is stored are skipped as in every insert.
        """
        self._require_safe_store()
        if not self.exists():
            self.create()

        schema = self.spec.schema

        def typed_batches(reader: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in reader:
                if batch.num_rows:
                    yield from pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()

        first_run = typed_batches(iter(batches()))
        first = next(first_run, None)
        if first is None:  # nothing to store: no commit, as for an empty batch
            return InsertResult(0, 0, self.version())
        opened = [itertools.chain([first], first_run)]

        def typed() -> pa.RecordBatchReader:
            reader = opened.pop() if opened else typed_batches(iter(batches()))
            return pa.RecordBatchReader.from_batches(schema, reader)

        return self._merge_new_keys(typed)

    def _merge_new_keys(self, source: Callable[[], pa.Table | pa.RecordBatchReader]) -> InsertResult:
        """One conflict-checked MERGE inserting the rows whose key is not stored; redone on a lost race."""
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in self.spec.key)

        def merge(dt: DeltaTable) -> InsertResult:
            metrics = (dt.merge(source(), predicate, source_alias="s", target_alias="t")
                       .when_not_matched_insert_all().execute())
            inserted = int(metrics.get("num_target_rows_inserted", 0))
            given = int(metrics.get("num_source_rows", inserted))
            return InsertResult(inserted, given - inserted, self.version())

        with self._lock():
            return self._committing("insert", merge)

    def delete(self, predicate: str) -> int:
        """Delete rows matching a SQL predicate (one commit, redone if another writer won the race);
        returns how many were removed."""
        self._require_safe_store()
        with self._lock():
            metrics = self._committing("delete", lambda dt: dt.delete(predicate))
        return int(metrics.get("num_deleted_rows", 0))

    def replace_rows(self, predicate: str, rows: pa.Table) -> int:
        """Replace every row matching ``predicate`` by ``rows`` in ONE commit (``doctor --repair``
        keeps one row per duplicated key this way); returns the rows written."""
        rows = rows.select(self.spec.columns).cast(self.spec.schema)
        self._refuse_repeated_keys(rows)
        self._require_safe_store()
        with self._lock():
            self._committing("repair", lambda dt: write_deltalake(dt, rows, mode="overwrite",
                                                                  predicate=predicate))
        return rows.num_rows

    def maintain(self, vacuum_hours: int = 168) -> dict[str, Any]:
        """Compact small files, write a checkpoint and vacuum files no version younger than
        ``vacuum_hours`` needs. Tables fed one row at a time (``heart_user``) need this daily.

        Only one maintainer per table at a time, across machines: two compactions at once both commit
        and double the table (deltalake 1.6.6, reproduced on a local folder and on S3), so this holds
        the table's maintenance lease. Never call it from a request path: it rewrites the table."""
        self._require_safe_store()
        with self.maintenance_lease(), self._lock():
            compacted = self._committing("compact", lambda dt: dt.optimize.compact())
            dt = self.table()
            dt.create_checkpoint()
            removed = dt.vacuum(retention_hours=vacuum_hours, enforce_retention_duration=False,
                                dry_run=False)
            dt.cleanup_metadata()
        return {"compacted": compacted, "vacuumed_files": len(removed)}

    def maintenance_lease(self, wait_s: float = MAINTENANCE_WAIT_S) -> Any:
        """The lease every rewrite of this table's files holds (compaction, history purge, repair)."""
        return held(open_objects(self.root), f"maintain-{self.spec.table_name}",
                    default_holder(f"maintenance of {self.spec.table_name}"),
                    ttl_s=self.lease_ttl_s, wait_s=wait_s)

    # ------------------------------------------------------------------ health (heartrisk doctor)
    def duplicate_keys(self) -> pa.Table:
        """Keys stored more than once, with how often (empty when healthy)."""
        keys = self.read_arrow(columns=list(self.spec.key))
        counts = keys.group_by(list(self.spec.key)).aggregate([([], "count_all")])
        return counts.filter(pc.greater(counts.column("count_all"), 1))

    def remove_duplicates(self) -> int:
        """Keep the first row of each key stored more than once, in ONE commit (a replace of the rows
        with those keys) under the maintenance lease; returns the rows removed."""
        with self.maintenance_lease():
            duplicated = self.duplicate_keys()
            if duplicated.num_rows == 0:
                return 0
            first = self.spec.key[0]
            values = sorted(set(duplicated.column(first).to_pylist()))
            predicate = f"{first} IN ({', '.join(_sql_text(v) for v in values)})"
            rows = self.read_arrow().filter(pc.is_in(self.read_arrow(columns=[first]).column(first),
                                                     value_set=pa.array(values)))
            keep = _first_per_key(rows, self.spec.key)
            self.replace_rows(predicate, keep)
            return rows.num_rows - keep.num_rows

    def orphan_files(self, min_age_hours: int = 1) -> list[str]:
        """Data files no commit of the log knows, older than ``min_age_hours`` (younger ones may belong
        to a write in progress): what a writer killed between its files and its commit leaves."""
        dt = self.table()
        every = set(dt.vacuum(retention_hours=min_age_hours, dry_run=True, enforce_retention_duration=False,
                              full=True))
        removed_by_commits = set(dt.vacuum(retention_hours=min_age_hours, dry_run=True,
                                           enforce_retention_duration=False))
        return sorted(every - removed_by_commits)

    def missing_files(self) -> list[str]:
        """Data files the latest version needs that are not in the store (deleted by hand, lost with a
        disk): every read of the table fails on them. delta-rs' repair in dry run lists them and
        changes nothing."""
        return sorted(self.table().repair(dry_run=True).get("files_removed", []))

    def unreadable_files(self) -> list[str]:
        """Data files of the latest version whose Parquet footer cannot be read (not Parquet, cut
        short): a failed read does not always name the file (delta-rs says only "Generic
        LocalFileSystem error" of a file shorter than its log entry)."""
        bad = []
        for fragment in self.table().to_pyarrow_dataset(schema=self.spec.schema).get_fragments():
            try:
                fragment.ensure_complete_metadata()
            except (OSError, pa.ArrowException):
                bad.append(fragment.path)
        return sorted(bad)

    def remove_files(self, paths: Sequence[str]) -> int:
        """Delete data files by their path in the table (``doctor --repair`` of orphan files)."""
        objects = open_objects(self.uri)
        for path in paths:
            objects.delete(path)
        return len(paths)

    def schema_drift(self) -> list[str]:
        """How the stored table's schema differs from the group's (names, types, nullability)."""
        stored = pa.schema(self.table().schema().to_arrow())
        problems = []
        for f in self.spec.schema:
            if f.name not in stored.names:
                problems.append(f"column {f.name} is missing")
                continue
            have = stored.field(f.name)
            if _plain(have.type) != _plain(f.type):
                problems.append(f"column {f.name} is {have.type}, not {f.type}")
            elif have.nullable != f.nullable:
                problems.append(f"column {f.name} is {'' if have.nullable else 'not '}nullable")
        problems += [f"column {name} is not in the schema" for name in stored.names
                     if name not in self.spec.schema.names]
        return problems

    def purge_history(self) -> int:
        """Make the rows no longer in the latest version unreadable, time travel included.

        Deleting rows is not enough with Delta Lake: older versions still point at the files that hold
        them, and the commit log records each file's min/max statistics and a delete's predicate. So
        this vacuums every file the latest version does not use (retention 0), then checkpoints and
        drops the log before the checkpoint (log retention 0 for the cleanup, put back after). Safe to
        repeat. Returns the number of data files removed. Holds the table's lock and its maintenance
        lease throughout (a compaction running beside it could bring the removed rows back).

        The vacuum is delta-rs' default "lite" one: it removes only files a commit removed, never a
        file that a writer on another machine has written but not committed yet.
        """
        self._require_safe_store()
        with self.maintenance_lease(), self._lock():
            return self._purge()

    def forget_rows(self, predicate: str) -> tuple[int, int]:
        """Delete the rows matching ``predicate`` and purge the history, under ONE maintenance lease
        (no compaction can slip between the two and write the rows back); then check that the latest
        version holds no such row. Returns (rows deleted, data files vacuumed). Conflicting commits of
        other writers (serve replicas storing submissions) are redone, never shown as a traceback."""
        self._require_safe_store()
        with self.maintenance_lease(), self._lock():
            deleted = int(self._committing("delete", lambda dt: dt.delete(predicate)).get(
                "num_deleted_rows", 0))
            vacuumed = self._purge()
            left = self.table().to_pyarrow_dataset(schema=self.spec.schema).count_rows(
                filter=_sql_equals(predicate, self.spec.schema))
            if left:
                raise StoreError(f"{left} row(s) matching {predicate} are still in {self.spec.table_name} "
                                 "after the delete; run the command again")
        return deleted, vacuumed

    def _purge(self) -> int:
        table = self.table()
        removed = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        before = table.metadata().configuration.get(LOG_RETENTION) or DEFAULT_LOG_RETENTION
        self._committing("purge", lambda dt: dt.alter.set_table_properties(
            {LOG_RETENTION: "interval 0 seconds"}))
        table = self.table()
        table.create_checkpoint()
        table.cleanup_metadata()
        self._committing("purge", lambda dt: dt.alter.set_table_properties(
            {LOG_RETENTION: before, PURGED_AT: utc_now().isoformat()}, raise_if_not_exists=False))
        return len(removed)

    def purged_at(self) -> str:
        """When the history was last purged (``""`` if never): caches of rows key on it, so a row
        that ``forget`` removed is dropped from every replica's cache too."""
        if not self.exists():
            return ""
        return self.table().metadata().configuration.get(PURGED_AT) or ""

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

        Columns come typed as the group's schema, whichever types delta-rs wrote a file with. A read
        of the latest version whose files another machine's ``forget`` removed meanwhile reads the
        new latest version (:meth:`reading`)."""
        where = self._filter(start, end, sources)
        if version is None and as_of is None:
            return self.reading(lambda: self._scan(self.table(), columns, where))
        return self._scan(self.table(version, as_of), columns, where)

    def read_batches(self, *, version: int | None = None, sources: Sequence[str] | None = None,
                     columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The rows a record batch at a time (typed as the schema): for readers that keep only part of
        a table too large to hold whole (a training sample)."""
        dataset = self.table(version).to_pyarrow_dataset(schema=self.spec.schema)
        yield from dataset.to_batches(columns=list(columns) if columns else None,
                                      filter=self._filter(None, None, sources))

    def read(self, **kwargs: Any) -> pd.DataFrame:
        """Same as :meth:`read_arrow`, as pandas (nullable features as NaN/None)."""
        return self.read_arrow(**kwargs).to_pandas()

    def count(self, **kwargs: Any) -> int:
        return self.read_arrow(columns=[self.spec.key[0]], **kwargs).num_rows

    def status(self) -> dict[str, Any]:
        """Rows, rows by source, current version and the time of the last write (for `status`)."""
        if not self.exists():
            return {"exists": False, "uri": self.uri}
        return self.reading(self._status)

    def _status(self) -> dict[str, Any]:
        table = self.table()
        columns = ["source"] if "source" in self.spec.columns else [self.spec.key[0]]
        data = self.read_arrow(version=table.version(), columns=columns)
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

    def _require_safe_store(self) -> None:
        require_conditional_writes(self.root, self.single_writer)

    def _committing(self, what: str, attempt: Callable[[DeltaTable], Any]) -> Any:
        """Run ``attempt`` on the latest version; if its commit lost a race, again on the new one.

        The pause grows from 50 ms to about 2 s with jitter, so writers that collided spread out. Also
        redone: a commit whose log entries were removed under it (``Invalid table version``: a
        ``forget`` on another machine purged the history while this writer read it)."""
        last: DeltaError | None = None
        for tries in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return attempt(self.table())
            except DeltaError as exc:
                if not (isinstance(exc, CommitFailedError) or _log_moved(exc)):
                    raise
                last = exc
                if tries == COMMIT_ATTEMPTS:
                    break
                time.sleep(random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2 ** tries))
        raise StoreError(self._gave_up(what, last)) from None

    def _gave_up(self, what: str, last: DeltaError | None) -> str:
        """Why a write was not stored after :data:`COMMIT_ATTEMPTS` tries: lost races, or a data file
        missing every time (deleted by hand: an insert into such a table said "other writers won the
        race" after 12 tries; `doctor` names the file)."""
        text = first_line(last) if last is not None else ""
        if last is None or isinstance(last, CommitFailedError) or "Invalid table version" in text:
            return (f"{what} on {self.spec.table_name}: other writers won the race for the next table "
                    f"version {COMMIT_ATTEMPTS} times in a row ({text}); this write was not stored. "
                    "Try again")
        return (f"{what} on {self.spec.table_name}: a data file was missing {COMMIT_ATTEMPTS} times in a "
                f"row ({text}); this write was not stored. Run `heartrisk doctor`, which names missing "
                "files (if `forget` was running on another machine, try again once it is done)")

    def reading(self, read: Callable[[], Any]) -> Any:
        """Run ``read`` (of the latest version); if files it listed were removed under it, again.

        ``forget`` on another machine deletes the files of older versions and the log before its
        checkpoint (:meth:`purge_history`). A reader that listed them a moment before finds them
        gone: delta-rs says "not found" for a log file, pyarrow ``FileNotFoundError`` for a data
        file. The latest version, opened again, has every file it lists (an attack helper saw
        `daily` die with the raw error in 1 of 11 runs beside a forget). A reader that pins the
        latest version and reads at it (:class:`~heartrisk.store.view.FeatureView`) passes both steps
        here, so it pins the new one; so does a reader that goes back to its pinned version for a
        second read (train: a purge between its reads is :class:`VersionPurgedError`, re-pinned here)."""
        last = ""
        for tries in range(1, READ_ATTEMPTS + 1):
            try:
                return read()
            except (DeltaError, OSError, VersionPurgedError) as exc:
                if not _moved_under_reader(exc):
                    raise
                last = first_line(exc)
                if tries == READ_ATTEMPTS:
                    raise StoreError(f"reading {self.spec.table_name}: files were missing {READ_ATTEMPTS} "
                                     f"times in a row ({last}); run `heartrisk doctor`, which names missing "
                                     "files (if `forget` was running on another machine, run this again "
                                     "once it is done)") from exc
                time.sleep(random.uniform(0.5, 1.0) * 0.05 * 2 ** tries)
        raise AssertionError("unreachable")

    def _refuse_repeated_keys(self, batch: pa.Table) -> None:
        keys = _key_array(batch, self.spec.key)
        if pc.count_distinct(keys).as_py() == batch.num_rows:
            return
        seen: set[str] = set()
        problems = []
        for row, key in enumerate(keys.to_pylist()):
            if key in seen:
                problems.append(Problem(row, "/".join(self.spec.key), str(key).replace("\x1f", "/"),
                                        "appears more than once in this batch"))
            seen.add(key)
        raise ValidationError(problems, f"insert into {self.spec.table_name}")

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

        delta-rs writes the files a DELETE (or an optimize, or a MERGE) writes with ``string_view``
        columns (deltalake 1.6.6), while appends write ``string``. A filter on the bare field is checked
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


def _moved_under_reader(exc: Exception) -> bool:
    """Whether a read failed because a purge removed what it had pinned or listed (worth a re-read
    of the latest version), not because the table is missing or broken."""
    if isinstance(exc, VersionPurgedError):
        return True
    return not isinstance(exc, TableNotFoundError) and _log_moved(exc)


def _log_moved(exc: Exception) -> bool:
    """Whether a Delta error says the log changed under the reader (history purged meanwhile)."""
    text = str(exc)
    return any(sign in text for sign in ("Invalid table version", "not found", "No such file"))


def _sql_text(value: object) -> str:
    """A string literal for a Delta SQL predicate (quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def _sql_equals(predicate: str, schema: pa.Schema) -> pc.Expression:
    """``column = 'text'`` (the only form ``forget`` uses) as an Arrow filter, cast to the schema."""
    column, _, literal = predicate.partition("=")
    name = column.strip()
    value = literal.strip()
    if not (name in schema.names and value.startswith("'") and value.endswith("'")):
        raise ValueError(f"not a simple equality: {predicate!r}")
    return pc.field(name).cast(schema.field(name).type) == value[1:-1].replace("''", "'")


def _first_per_key(rows: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The first row of each key, in the order read."""
    numbered = rows.append_column("__row", pa.array(range(rows.num_rows), pa.int64()))
    firsts = numbered.group_by(list(key), use_threads=False).aggregate([("__row", "min")])
    return rows.take(pa.array(sorted(firsts.column("__row_min").to_pylist()), pa.int64()))


def _plain(kind: pa.DataType) -> pa.DataType:
    """A type with the physical variants delta-rs may report folded (string_view, large_string)."""
    if kind in (pa.string_view(), pa.large_string()):
        return pa.string()
    return kind


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

