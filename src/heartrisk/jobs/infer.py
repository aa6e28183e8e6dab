"""Batch inference: the champion scores the new rows of ``heart`` into ``heart_predictions``.

Once a day (``heartrisk infer``, or the scheduler) the rows whose event time falls in the last
``hours`` and that the champion has not scored yet get a probability and a decision. The predictions
group is keyed on (record_id, model_version), so a re-run, or two runs at once, add nothing twice;
rows already scored are also left out before scoring, which is where the time goes.

Each run logs to the MLflow experiment ``batch-inference``: the batch's size and metrics (the rows
carry their diagnosis), the drift summary, and the monitoring images written to
``<home>/monitoring/`` (see :mod:`heartrisk.monitoring.images`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
from filelock import FileLock

from heartrisk import tracking
from heartrisk.clock import as_utc, from_millis, utc_now
from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.monitoring.drift import DriftReport
from heartrisk.monitoring.metrics import classification_metrics
from heartrisk.progress import progress_bar
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
from heartrisk.store.table import InsertResult

EXPERIMENT = "batch-inference"
#: Latest predictions listed in ``recent_predictions.csv`` (the dashboard lists 25).
RECENT_ROWS = 50
#: A run waits this long for another inference run on the same home before giving up.
LOCK_TIMEOUT_S = 1800


class InferError(UserError, ValueError):
    """Batch inference was asked for something it cannot do (e.g. a window of no hours)."""


@dataclass(frozen=True)
class InferResult:
    """What one run did, and where its record is (MLflow run, monitoring files)."""

    model_version: str
    window_start: datetime
    window_end: datetime
    rows_in_window: int
    already_scored: int
    inserted: int
    predictions_version: int | None
    metrics: dict[str, float]
    drift: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    artifacts: tuple[Path, ...] = ()
    seconds: float = 0.0
    engine: str = "local"
    #: What the largest step of the daft engine held (empty for the local engine): the hash buckets
    #: of record ids, the most ids one bucket's plan held, the largest record batch the driver got.
    steps: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """What the run did in one line: printed by the CLI, kept in the job record."""
        hours = (self.window_end - self.window_start) / timedelta(hours=1)
        if self.inserted == 0:
            return (f"no new rows to score in the last {hours:g} h: {self.rows_in_window:,} in the "
                    f"window, all already scored by champion v{self.model_version}")
        text = (f"champion v{self.model_version} scored {self.inserted:,} new rows of the last "
                f"{hours:g} h ({self.already_scored:,} already scored); heart_predictions_v1 is at "
                f"version {self.predictions_version}")
        shown = [f"{k} {self.metrics[k]:.3f}" for k in ("roc_auc", "precision", "recall", "f1")
                 if math.isfinite(self.metrics.get(k, math.nan))]
        if shown:
            text += "; " + ", ".join(shown)
        if self.drift:
            drifted = self.drift.get("drifted") or []
            text += f"; drift: {', '.join(drifted) if drifted else 'none flagged'}"
        return text


def run_infer(settings: Settings, hours: float = 24, now: datetime | None = None,
              artifacts: bool = True) -> InferResult:
    """Score the rows of the last ``hours`` the champion has not scored; log the run and the images.

    ``now`` is the run's clock (a backfill or a test passes it); the window is ``(now - hours, now]``.
    Raises :class:`~heartrisk.model.registry.NoModelError` when there is no champion and
    :class:`~heartrisk.store.table.StoreError` when ``heart`` does not exist yet.
    """
    from heartrisk.model.registry import champion_model

    if not (hours > 0 and math.isfinite(hours)):
        raise InferError(f"--hours must be a positive number of hours, not {hours!r}")
    started = time.perf_counter()
    settings.ensure_home()
    now = as_utc(now) if now is not None else utc_now()
    start, end = now - timedelta(hours=hours), now + timedelta(microseconds=1)
    heart = open_group(settings, HEART)
    heart.table()  # a clear StoreError ("run `heartrisk ingest` first") before any work
    model = champion_model(settings)
    lock = FileLock(str(settings.locks_dir / "infer.lock"), timeout=LOCK_TIMEOUT_S)
    engine = settings.batch_engine
    with lock, progress_bar(transient=True) as bar:
        task = bar.add_task(f"scoring the last {hours:g} h of heart ({engine} engine)", total=3)
        scored = (score_with_daft if engine == "daft" else score_locally)(settings, heart, model, start, end,
                                                                           now)
        written = scored.written
        metrics = batch_metrics(scored.batch, rows_in_window=scored.in_window)
        bar.update(task, advance=2, description="monitoring")
        drift: dict[str, Any] = {}
        paths: list[Path] = []
        if artifacts and len(scored.batch):
            report, paths = write_monitoring(settings, model, now, hours, scored.rows)
            drift = report.to_dict()
            metrics.update(drift_metrics(report))
        run_id = log_run(settings, model, start, now, hours, metrics, paths, written, engine)
        bar.update(task, advance=1)
    inserted = written.inserted if written else 0
    return InferResult(
        model_version=model.version, window_start=start, window_end=now, rows_in_window=scored.in_window,
        already_scored=scored.in_window - len(scored.batch), inserted=inserted,
        predictions_version=written.version if written else None, metrics=metrics, drift=drift,
        run_id=run_id, artifacts=tuple(paths), seconds=time.perf_counter() - started, engine=engine,
        steps=scored.steps,
    )


@dataclass(frozen=True)
class Scored:
    """What one engine did: the window's size, the new rows' predictions (for the run's metrics; the
    daft engine keeps only the columns metrics read), the window's rows if read, and the write."""

    in_window: int
    batch: pd.DataFrame
    rows: pd.DataFrame | None
    written: InsertResult | None
    steps: dict[str, int] = field(default_factory=dict)


def score_locally(settings: Settings, heart: Any, model: Any, start: datetime, end: datetime,
                  now: datetime) -> Scored:
    """The window read into this process, scored at once, stored in one insert."""
    pending = unscored(settings, heart, model.version, start, end)
    batch = score(model, pending.new, now)
    written = open_group(settings, HEART_PREDICTIONS).insert(batch) if len(batch) else None
    return Scored(pending.in_window, batch, pending.rows, written)


def score_with_daft(settings: Settings, heart: Any, model: Any, start: datetime, end: datetime,
                    now: datetime) -> Scored:
    """The window scored by Daft partition by partition and streamed into one insert (one commit).

    The monitoring report then reads the window itself (``rows`` None): only the recent window, never
    the whole table."""
    from heartrisk.engine.runner import require_daft

    require_daft()
    from heartrisk.engine.scoring import BatchTally, scoring_plan

    plan = scoring_plan(settings, model, start, end, now)
    tally = BatchTally()
    written = open_group(settings, HEART_PREDICTIONS).insert_stream(lambda: tally.watch(plan.batches()))
    batch = tally.frame()
    chosen = plan.selection()
    steps = {"buckets": plan.buckets, "largest_bucket_ids": max(chosen.bucket_ids, default=0),
             "largest_batch_rows": plan.largest_batch}
    return Scored(chosen.in_window, batch, None, written if len(batch) else None, steps)


@dataclass(frozen=True)
class Pending:
    """The window's size, its rows (None when nothing is new: they were not read) and the new ones."""

    in_window: int
    rows: pd.DataFrame | None
    new: pd.DataFrame


def unscored(settings: Settings, heart: Any, model_version: str, start: datetime,
             end: datetime) -> Pending:
    """The rows of the window this model version has not scored yet, each record once.

    Ids are compared first, so a run with nothing new reads one column, not the whole window. A record
    id stored twice in ``heart`` (left by a race before issue 15, or a copy made by hand) is scored
    once, the first row read, so a duplicate never stops inference; ``heartrisk doctor --repair``
    removes it from the table.
    """
    from heartrisk.monitoring.reads import scored_ids

    columns = ["record_id", "event_time", "source", *FEATURE_NAMES, LABEL.name]
    ids = pc.unique(heart.read_arrow(start=start, end=end, columns=["record_id"]).column("record_id"))
    done = scored_ids(settings, model_version, start)
    already = (pc.sum(pc.is_in(ids, value_set=done)).as_py() or 0) if len(done) else 0
    if already == len(ids):
        return Pending(len(ids), None, pd.DataFrame(columns=columns))
    rows = heart.read(start=start, end=end, columns=columns)
    rows = rows.drop_duplicates("record_id", keep="first").reset_index(drop=True)
    new = rows[~rows["record_id"].isin(done.to_numpy(zero_copy_only=False))] if len(done) else rows
    return Pending(len(rows), rows, new)


def score(model: Any, rows: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """``heart_predictions`` rows for ``rows``: probability, decision at the model's threshold."""
    if rows.empty:
        return pd.DataFrame(columns=HEART_PREDICTIONS.columns)
    # Rows of `heart` passed the feature spec when they were written, so they are not checked again.
    probability = model.model.risk(rows[list(FEATURE_NAMES)], validate=False)
    return pd.DataFrame({
        "record_id": rows["record_id"],
        "event_time": rows["event_time"],  # kept a tz-aware column: to_numpy() would box each value
        "predicted_at": pd.Timestamp(now),
        "model_version": str(model.version),
        "probability": probability,
        "prediction": probability >= model.threshold,
        "threshold": float(model.threshold),
        LABEL.name: rows[LABEL.name],
        "source": rows["source"],
    }).reset_index(drop=True)


def batch_metrics(batch: pd.DataFrame, rows_in_window: int) -> dict[str, float]:
    """Volume and (for labelled rows) classification metrics of this run's batch."""
    metrics: dict[str, float] = {"rows_in_window": float(rows_in_window),
                                 "rows_scored": float(len(batch))}
    for source, count in batch["source"].value_counts().items():
        metrics[f"rows_{source}"] = float(count)
    if len(batch):
        metrics["mean_probability"] = float(batch["probability"].mean())
        metrics["predicted_positive_rate"] = float(batch["prediction"].astype(bool).mean())
    metrics.update({k: float(v) for k, v in classification_metrics(batch).items()})
    return metrics


def drift_metrics(report: DriftReport) -> dict[str, float]:
    """The drift summary as run metrics: how many features drifted, each value, the window size."""
    metrics = {"drift_features_flagged": float(len(report.drifted)),
               "drift_window_rows": float(report.window.rows),
               "drift_window_enough": float(report.window.enough)}
    for row in report.rows:
        if math.isfinite(row.value):
            metrics[f"drift_{row.feature}"] = row.value
    return metrics


def write_monitoring(settings: Settings, model: Any, now: datetime, hours: float,
                     rows: pd.DataFrame | None = None) -> tuple[DriftReport, list[Path]]:
    """The monitoring report for the champion as of ``now``, saved under the monitoring folder.

    The same report the dashboard draws (:func:`heartrisk.monitoring.snapshot.build_snapshot`);
    ``rows`` are the ``heart`` rows of the window the run already read (not read again)."""
    from heartrisk.monitoring.images import save_report
    from heartrisk.monitoring.snapshot import ReportSettings, build_snapshot

    config = ReportSettings(hours=hours, recent_rows=RECENT_ROWS)
    snapshot = build_snapshot(settings, config, now=now, model=model, rows=rows)
    return snapshot.drift, save_report(snapshot, settings.monitoring_dir)


def log_run(settings: Settings, model: Any, start: datetime, now: datetime, hours: float,
            metrics: dict[str, float], paths: list[Path], written: Any, engine: str = "local") -> str:
    """One MLflow run in ``batch-inference`` with the batch's metrics and the monitoring files."""
    with tracking.run(settings, EXPERIMENT, f"infer-v{model.version}-{now:%Y%m%d-%H%M}") as run:
        run.log_params({"model_version": model.version, "hours": f"{hours:g}",
                        "window_start": start.isoformat(), "window_end": now.isoformat(),
                        "threshold": f"{model.threshold:.6f}", "engine": engine,
                        "predictions_table_version": "" if written is None else str(written.version)})
        run.log_metrics(metrics, at=now)
        run.set_tags({"empty": str(not metrics.get("rows_scored")), "model_run_id": model.run_id})
        for path in paths:
            run.log_artifact(path, "monitoring")
    return run.run_id


def infer_status(settings: Settings) -> dict[str, Any]:
    """For `heartrisk status`: predictions per model version and what the last run did."""
    from heartrisk.tracking import find_runs

    group = open_group(settings, HEART_PREDICTIONS)
    status: dict[str, Any] = {"predictions": 0, "monitoring_dir": str(settings.monitoring_dir)}
    if group.exists():
        table = group.read_arrow(columns=["model_version", "predicted_at"])
        counts = pc.value_counts(table.column("model_version")).to_pylist()
        status["predictions"] = table.num_rows
        status["by_model_version"] = {c["values"]: c["counts"] for c in counts}
        if table.num_rows:
            status["last_predicted_at"] = pc.max(table.column("predicted_at")).as_py().isoformat()
    last = find_runs(settings, EXPERIMENT)
    if last:
        run = last[0]
        shown = ("rows_scored", "roc_auc", "f1", "drift_features_flagged")
        status["last_run"] = {
            "run_id": run.info.run_id, "status": run.info.status,
            "started": from_millis(run.info.start_time).isoformat(timespec="seconds"),
            "model_version": run.data.params.get("model_version"),
            **{k: run.data.metrics[k] for k in shown if k in run.data.metrics},
        }
    return status
