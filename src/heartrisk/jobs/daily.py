"""`heartrisk daily`: N synthetic rows and every pending user submission into ``heart``, exactly once.

How "exactly once" holds:

* All rows of a run (synthetic and user) go into ``heart`` in ONE ``FeatureGroup.insert``, i.e. one
  Delta commit: a run killed at any moment has written all of its rows or none.
* The run is an MLflow run (experiment ``feature-pipeline``) created *before* the write, with the
  run's ``event_time`` as a parameter. Synthetic ``record_id`` s are ``synthetic:<run id>:<n>``; user
  rows are ``user:<submission_id>`` (the store skips keys it holds, so a submission lands once).
* A run found still RUNNING by the next invocation was killed (runs take a file lock, so no live run
  is RUNNING then). If ``heart`` holds rows with its event time, its write happened: the next
  invocation only finishes its bookkeeping and adds nothing, so a killed run plus a re-run leaves
  the state of one clean run. If not, nothing was written: it is marked FAILED and a new run starts.

User rows get ``event_time`` = the run's time (the merge time), not ``submitted_at``: downstream jobs
(batch inference over "rows of the last 24 h") see each merged row as new once, however late the
merge. ``submitted_at`` stays in ``heart_user``, joinable through the record id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from heartrisk import tracking
from heartrisk.clock import as_utc, utc_now
from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import FEATURES, LABEL
from heartrisk.jobs.forget import forget
from heartrisk.sources.quarantine import quarantine_pending
from heartrisk.store.groups import HEART, HEART_USER, open_group, synthetic_record_ids, user_record_ids
from heartrisk.store.table import LOCK_TIMEOUT_S
from heartrisk.synth.registry import SynthesizerMissingError, load_synthesizer
from heartrisk.synth.synthesizer import SynthError, check_row_count
from heartrisk.tracking import TrackedRun, attach, find_runs, tracking_exists
from heartrisk.tracking import client as tracking_client

log = logging.getLogger(__name__)
EXPERIMENT = "feature-pipeline"
JOB = "daily"
DEFAULT_SYNTHETIC = 100
#: The most synthetic rows one daily run may add: more would swamp the real rows in a few days.
MAX_SYNTHETIC_PER_RUN = 100_000


class DailyError(UserError, ValueError):
    """The daily job was asked for something it cannot do; nothing was written."""


@dataclass(frozen=True)
class DailyResult:
    """What one daily run did (or, ``resumed``, what the killed run it finished had done)."""

    run_id: str
    event_time: datetime
    synthetic_rows: int
    user_rows: int
    pending_submissions: int
    skipped_rows: int
    table_version: int
    synthesizer_version: str | None
    resumed: bool = False
    abandoned_runs: tuple[str, ...] = ()
    maintenance: dict[str, Any] = field(default_factory=dict)
    quarantined: int = 0  # pending submissions held back as implausible (heartrisk.sources.quarantine)
    #: Synthetic rows were asked for but no synthesizer is registered yet (``require_synthesizer=False``).
    no_synthesizer: bool = False
    #: Submissions a `forget` (on any machine) erased after this run read them and before its insert;
    #: forgotten again after the insert (:func:`forget_again`).
    forgotten_meanwhile: int = 0

    @property
    def summary(self) -> str:
        """One line for the job record and the log."""
        what = "finished the run cut short: " if self.resumed else ""
        note = " (no synthesizer yet)" if self.no_synthesizer else ""
        again = (f"; {self.forgotten_meanwhile} forgotten while it ran, removed again"
                 if self.forgotten_meanwhile else "")
        return (f"{what}{self.synthetic_rows} synthetic{note} and {self.user_rows} user rows "
                f"(heart v{self.table_version}){again}")


def check_synthetic_count(n: object) -> int:
    """N as a whole number from 0 to :data:`MAX_SYNTHETIC_PER_RUN`, else a clear error."""
    try:
        count = check_row_count(n)
    except SynthError:
        count = -1
    if not 0 <= count <= MAX_SYNTHETIC_PER_RUN:
        raise DailyError(f"the number of synthetic rows must be a whole number from 0 to "
                         f"{MAX_SYNTHETIC_PER_RUN:,} per run, not {n!r}")
    return count


# ---------------------------------------------------------------------------------------- rows
def merged_user_ids(settings: Settings) -> set[str]:
    """Record ids of the user rows ``heart`` already holds."""
    heart = open_group(settings, HEART)
    if not heart.exists():
        return set()
    return set(heart.read_arrow(columns=["record_id"], sources=["user"]).column("record_id").to_pylist())


def pending_submissions(settings: Settings) -> pd.DataFrame:
    """``heart_user`` submissions not yet in ``heart``, oldest first (the rows the merge will add).

    The one place that decides what the merge takes: a quarantine of implausible submissions filters
    this frame before :func:`user_rows`.
    """
    group = open_group(settings, HEART_USER)
    if not group.exists():
        return pd.DataFrame({name: pd.Series(dtype=object) for name in HEART_USER.columns})
    submissions = group.read()
    merged = merged_user_ids(settings)
    pending = ~user_record_ids(submissions["submission_id"]).isin(merged)
    return submissions[pending].sort_values(["submitted_at", "submission_id"]).reset_index(drop=True)


def user_rows(submissions: pd.DataFrame, event_time: datetime) -> pd.DataFrame:
    """Submissions as ``heart`` rows: ``record_id = user:<submission_id>``, the run's event time."""
    ids = user_record_ids(submissions["submission_id"])
    return _heart_rows(submissions, ids.tolist(), event_time, "user")


def synthetic_rows(sample: pd.DataFrame, run_id: str, event_time: datetime) -> pd.DataFrame:
    """Sampled rows as ``heart`` rows with ids derived from the run id."""
    return _heart_rows(sample, synthetic_record_ids(run_id, len(sample)), event_time, "synthetic")


def _heart_rows(values: pd.DataFrame, record_ids: list[str], event_time: datetime,
                source: str) -> pd.DataFrame:
    """``values``' answers and label under ``heart``'s columns, with one dtype per column from the spec
    (numbers float, answers object) so a column of Unknowns concatenates like any other."""
    rows = pd.DataFrame({
        "record_id": record_ids,
        "event_time": pd.Series([pd.Timestamp(event_time)] * len(values), dtype="datetime64[us, UTC]"),
        "source": source,
    })
    for f in FEATURES:
        column = values[f.name].reset_index(drop=True)
        rows[f.name] = pd.to_numeric(column).astype(float) if f.is_numeric else column.astype(object)
    rows[LABEL.name] = values[LABEL.name].to_numpy()
    return rows[HEART.columns]


def rows_at(settings: Settings, event_time: datetime) -> pd.DataFrame:
    """``heart`` rows written with exactly this event time (one run's rows), record id and source."""
    heart = open_group(settings, HEART)
    if not heart.exists():
        return pd.DataFrame(columns=["record_id", "source"])
    moment = pd.Timestamp(event_time)
    return heart.read(start=moment, end=moment + timedelta(microseconds=1), columns=["record_id", "source"])


# ---------------------------------------------------------------------------------------- the run
def _interrupted_runs(client: Any, experiment: str) -> list[Any]:
    return client.search_runs(
        [experiment], filter_string=f"tags.job = '{JOB}' and attributes.status = 'RUNNING'",
        order_by=["attributes.start_time ASC"],
    )


def finished_since(settings: Settings, moment: datetime) -> bool:
    """Whether a daily run that started at or after ``moment`` finished (its rows are in ``heart``).

    The scheduler asks this before re-running a daily job it saw cut short: the run may have
    committed and recorded FINISHED just before the process died, and running it again would add a
    second batch of synthetic rows for the same day."""
    since_ms = int(moment.timestamp() * 1000) - 1000  # the state's clock and MLflow's may differ by ms
    return bool(find_runs(settings, EXPERIMENT, f"tags.job = '{JOB}' and attributes.status = 'FINISHED' "
                                                f"and attributes.start_time >= {since_ms}"))


def _record(run: TrackedRun, result: DailyResult) -> None:
    """What the run did, as its metrics and its ``resumed`` tag."""
    run.log_metrics({
        "synthetic_rows": result.synthetic_rows, "user_rows": result.user_rows,
        "pending_submissions": result.pending_submissions, "skipped_rows": result.skipped_rows,
        "heart_version": result.table_version, "quarantined": result.quarantined,
        **{f"heart_user_{k}": v for k, v in _maintenance_counts(result.maintenance).items()},
    })
    run.set_tags({"resumed": str(result.resumed).lower()})


def _maintenance_counts(maintenance: dict[str, Any]) -> dict[str, float]:
    compacted = maintenance.get("compacted") or {}
    counts = {"files_removed": compacted.get("numFilesRemoved"),
              "files_added": compacted.get("numFilesAdded"),
              "vacuumed_files": maintenance.get("vacuumed_files")}
    return {k: float(v) for k, v in counts.items() if isinstance(v, (int, float))}


def maintain_user_group(settings: Settings) -> dict[str, Any]:
    """Compact, checkpoint and vacuum ``heart_user`` (one small file per submission otherwise).

    The merge is already committed when this runs, so a failure here is reported, not raised.
    """
    group = open_group(settings, HEART_USER)
    if not group.exists():
        return {}
    try:
        return group.maintain()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _settle_interrupted(settings: Settings, client: Any, experiment: str) -> tuple[DailyResult | None,
                                                                                    list[str]]:
    """Finish the killed run whose rows are in ``heart``; mark killed runs that wrote nothing FAILED."""
    abandoned: list[str] = []
    for run in _interrupted_runs(client, experiment):
        params = run.data.params
        written = rows_at(settings, datetime.fromisoformat(params["event_time"])) \
            if "event_time" in params else pd.DataFrame(columns=["record_id", "source"])
        if written.empty:
            client.set_tag(run.info.run_id, "outcome", "interrupted before writing; nothing was written")
            client.set_terminated(run.info.run_id, "FAILED")
            abandoned.append(run.info.run_id)
            continue
        heart = open_group(settings, HEART)
        result = DailyResult(
            run_id=run.info.run_id, event_time=datetime.fromisoformat(params["event_time"]),
            synthetic_rows=int((written["source"] == "synthetic").sum()),
            user_rows=int((written["source"] == "user").sum()),
            pending_submissions=int(params.get("pending_submissions", 0)), skipped_rows=0,
            table_version=heart.version(), synthesizer_version=params.get("synthesizer_version") or None,
            resumed=True, abandoned_runs=tuple(abandoned), maintenance=maintain_user_group(settings),
        )
        tracked = attach(settings, run.info.run_id)
        _record(tracked, result)
        tracked.finish()
        return result, abandoned
    return None, abandoned


def run_daily(settings: Settings, synthetic: int = DEFAULT_SYNTHETIC, *, positive_rate: float | None = None,
              now: datetime | None = None, require_synthesizer: bool = True) -> DailyResult:
    """Add ``synthetic`` rows from the champion synthesizer and merge pending submissions, once.

    ``positive_rate`` (default: the real rate the synthesizer was fitted on) asks for more or fewer
    positive synthetic rows. ``synthetic=0`` only merges submissions and needs no synthesizer. Bad
    input, a missing or corrupt synthesizer: a clear error before anything is written; with
    ``require_synthesizer=False`` a home with no synthesizer yet only merges (`heartrisk up` before
    its first fit) and the result says so.
    """
    count = check_synthetic_count(synthetic)
    if positive_rate is not None and not 0.0 <= positive_rate <= 1.0:
        raise DailyError(f"positive rate {positive_rate!r} must be between 0 and 1")
    settings.ensure_home()
    try:
        with FileLock(str(settings.locks_dir / "daily.lock"), timeout=LOCK_TIMEOUT_S):
            client = tracking_client(settings) if tracking_exists(settings) else None
            known = client.get_experiment_by_name(EXPERIMENT) if client else None
            finished, abandoned = (_settle_interrupted(settings, client, known.experiment_id)
                                   if known else (None, []))
            if finished is not None:
                return finished
            loaded, missing = _synthesizer(settings, count, require_synthesizer)  # before any write
            count = count if loaded else 0
            event_time = as_utc(now or utc_now())
            pending, quarantined = quarantine_pending(settings, pending_submissions(settings), event_time)
            with tracking.run(settings, EXPERIMENT, f"daily-{event_time:%Y%m%d-%H%M%S}",
                              tags={"job": JOB}) as run:
                run.log_params({"synthetic": count, "positive_rate": positive_rate,
                                "event_time": event_time.isoformat(),
                                "synthesizer_version": loaded.version if loaded else "",
                                "pending_submissions": len(pending), "quarantined": quarantined})
                result = _write(settings, run, event_time, count, positive_rate, loaded, pending)
                result = replace(result, abandoned_runs=tuple(abandoned), quarantined=quarantined,
                                 forgotten_meanwhile=forget_again(settings, pending),
                                 maintenance=maintain_user_group(settings), no_synthesizer=missing)
                _record(run, result)
            return result
    except Timeout:
        raise DailyError(f"another daily run holds {settings.locks_dir / 'daily.lock'}; "
                         "try again when it ends") from None


def forget_again(settings: Settings, merged: pd.DataFrame) -> int:
    """Forget again each submission just merged that has left ``heart_user`` since this run read it.

    A `forget` (on any machine) between this run's read of the pending submissions and its insert
    deletes the submission from ``heart_user``, finds it in no other table yet, and says it is gone;
    the insert then puts it into ``heart``. Forget deletes from ``heart_user`` before it looks at
    ``heart``, so a forget either sees the merged row (and removes it) or has deleted the submission
    before this re-read sees it missing: then `forget` itself runs again here (its tables, its purge,
    its marks on any model trained in between). Returns how many."""
    if merged.empty:
        return 0
    shared = open_group(settings, HEART_USER)
    left = shared.reading(lambda: shared.read_arrow(version=shared.version(), columns=["submission_id"]))
    kept = set(left.column("submission_id").to_pylist())
    gone = [sid for sid in merged["submission_id"] if sid not in kept]
    for sid in gone:
        log.warning("submission %s was forgotten while this run merged it: forgetting it again", sid)
        forget(settings, sid)
    return len(gone)


def _synthesizer(settings: Settings, count: int, required: bool) -> tuple[Any, bool]:
    """The champion synthesizer when rows are wanted, and whether it was missing (and not required)."""
    if not count:
        return None, False
    try:
        return load_synthesizer(settings), False
    except SynthesizerMissingError:
        if required:
            raise
        return None, True


def _write(settings: Settings, run: TrackedRun, event_time: datetime, count: int,
           positive_rate: float | None, loaded: Any, pending: pd.DataFrame) -> DailyResult:
    """Sample, build the batch and insert it in one commit (the only write to ``heart``).

    Once the insert is committed the run must not end FAILED (a re-run would add its rows again):
    a failure after it leaves the run RUNNING, for the next run to settle."""
    run_id = run.run_id
    parts = [user_rows(pending, event_time)]
    if count:
        sample = loaded.synthesizer.sample(count, positive_rate=positive_rate, seed=int(run_id[:8], 16))
        parts.insert(0, synthetic_rows(sample.frame, run_id, event_time))
    parts = [part for part in parts if len(part)]
    heart = open_group(settings, HEART)
    if not parts:
        version = heart.version() if heart.exists() else -1
        return DailyResult(run_id, event_time, 0, 0, 0, 0, version, None)
    inserted = heart.insert(pd.concat(parts, ignore_index=True))
    run.committed()
    written = rows_at(settings, event_time)
    return DailyResult(
        run_id=run_id, event_time=event_time,
        synthetic_rows=int((written["source"] == "synthetic").sum()),
        user_rows=int((written["source"] == "user").sum()),
        pending_submissions=len(pending), skipped_rows=inserted.skipped, table_version=inserted.version,
        synthesizer_version=loaded.version if loaded else None,
    )
