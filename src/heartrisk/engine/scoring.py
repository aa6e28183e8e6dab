"""Batch scoring as Daft plans: the window of ``heart`` the champion has not scored, partition by
partition, on Daft's native runner or a Ray cluster, with no step holding the whole window.

Two kinds of plan over one snapshot of the window's files (:class:`~heartrisk.engine.delta_source.Snapshot`):

1. **Selection**, per hash bucket of ``record_id`` (about ``engine_bucket_rows`` ids each): read the
   bucket's ids with a locator (file, row), keep the first row of each id (a record id stored twice in
   ``heart`` is scored once, as by the local engine), and mark the ids this model version has scored
   (a join with only that bucket's ids of ``heart_predictions``). The driver turns the locators of the
   rows to score into one bit per row of the window's files. Why buckets: one Daft ``drop_duplicates``
   and anti-join over the window held every row of it in one hash table (the 1x run's peak was no
   lower than the local engine's); a bucket holds only its ids, two narrow columns.
2. **Scoring**: read only the selected rows (a file with none is not opened), score them in batches of
   ``engine_batch_rows`` rows with a :class:`Scorer`: a Daft class, so each worker process builds it
   once and loads the model version once, by number (not the alias, which may move during a run).
   The rows a worker turns into pandas for the model are converted exactly as the local engine
   converts them (Arrow typed to the group's schema, then ``to_pandas``), so both engines give the
   same probabilities.

The driver streams the scored rows into the store's one conflict-checked MERGE
(:meth:`heartrisk.store.table.FeatureGroup.insert_stream`): one commit per run, whatever the number of
workers or buckets, and none when a worker or the driver dies before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import daft
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from heartrisk.config import Settings
from heartrisk.engine.delta_source import ROW, Snapshot, snapshot
from heartrisk.engine.runner import bounded_scans, use_runner
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group

#: The selection's flag column: this model version has scored the record id.
DONE = "__done"
#: The ``heart`` columns the plan reads (what a prediction row needs).
READ_COLUMNS = ("record_id", "event_time", "source", *FEATURE_NAMES, LABEL.name)


def features_schema() -> pa.Schema:
    """The feature columns' types in ``heart``: what a worker casts a batch to before pandas."""
    return pa.schema([HEART.schema.field(name) for name in FEATURE_NAMES])


@daft.cls(max_concurrency=None)
class Scorer:
    """Scores batches of answers with one registered model version, loaded once per instance.

    Wrapped by ``daft.cls`` in :func:`scoring_plan`; Daft builds one instance per worker (process or
    Ray actor), which is where the model is loaded: every worker needs the registry (MLflow tracking
    URI) and the model's artifact store (e.g. S3 keys), not only the feature store.
    """

    def __init__(self, settings: Settings, version: str) -> None:
        from heartrisk.model.registry import load_model

        self.model = load_model(settings, version).model
        self.schema = features_schema()

    @daft.method.batch(return_dtype=daft.DataType.float64())
    def probability(self, *columns: Any) -> pa.Array:
        """P(heart disease) per row of one batch; ``columns`` are the 17 features in spec order."""
        batch = pa.table([c.to_arrow() for c in columns], names=list(FEATURE_NAMES)).cast(self.schema)
        frame = batch.to_pandas()
        if frame.empty:
            return pa.array([], pa.float64())
        return pa.array(np.asarray(self.model.risk(frame, validate=False), dtype=np.float64))


@dataclass(frozen=True)
class Selection:
    """The rows of the window to score, as packed bits per file of the snapshot, and the counts."""

    keep: dict[int, bytes]
    in_window: int             # distinct record ids in the window
    to_score: int
    bucket_ids: tuple[int, ...]  # distinct ids each bucket's plan held: what bounds its memory


@dataclass
class ScoringPlan:
    """The plans scoring one window: the selection (run once, on first use), then the scoring."""

    settings: Settings
    window: Snapshot
    scored: Snapshot | None
    model_version: str
    threshold: float
    now: datetime
    #: Rows of the largest record batch the driver received from the scoring plan (observed).
    largest_batch: int = 0
    _selection: Selection | None = field(default=None, repr=False)

    @property
    def buckets(self) -> int:
        """Hash buckets of ``record_id`` the selection runs in (the files' row counts, read from the
        Delta log, bound the window's rows)."""
        return max(1, math.ceil(self.window.rows / self.settings.engine_bucket_rows))

    def selection(self) -> Selection:
        """Which rows to score (runs the bucket plans the first time)."""
        if self._selection is None:
            self._selection = select_rows(self.window, self.scored, self.model_version, self.buckets)
        return self._selection

    def rows_in_window(self) -> int:
        """Distinct record ids in the window (the local engine's ``rows_in_window``)."""
        return self.selection().in_window

    def batches(self) -> pa.RecordBatchReader:
        """The scored rows as a stream (runs the scoring plan; a new call runs it again)."""
        chosen = self.selection()
        if not chosen.keep:
            return pa.RecordBatchReader.from_batches(HEART_PREDICTIONS.schema, iter(()))
        scored = bounded_scans(self._scoring(chosen.keep).to_arrow_iter(results_buffer_size=1))
        return pa.RecordBatchReader.from_batches(HEART_PREDICTIONS.schema, self._observed(_typed(scored)))

    def _observed(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.largest_batch = max(self.largest_batch, batch.num_rows)
            yield batch

    def _scoring(self, keep: dict[int, bytes]) -> Any:
        from daft import col, lit

        rows = self.window.read(READ_COLUMNS, keep=keep).into_batches(self.settings.engine_batch_rows)
        scorer = Scorer(self.settings, self.model_version)  # built on each worker, at its first batch
        probability = scorer.probability(*[col(name) for name in FEATURE_NAMES])
        return rows.select(
            col("record_id"), col("event_time"),
            lit(pd.Timestamp(self.now).tz_convert("UTC").to_pydatetime()).alias("predicted_at"),
            lit(self.model_version).alias("model_version"),
            probability.alias("probability"),
            (probability >= lit(self.threshold)).alias("prediction"),
            lit(self.threshold).alias("threshold"),
            col(LABEL.name), col("source"),
        )


def _typed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    schema = HEART_PREDICTIONS.schema
    for batch in batches:
        if batch.num_rows:
            yield from pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()


def scoring_plan(settings: Settings, model: Any, start: datetime, end: datetime,
                 now: datetime) -> ScoringPlan:
    """The plans scoring the rows of ``[start, end)`` that ``model`` has not scored, as of ``now``."""
    use_runner(settings)
    start_utc, end_utc = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    window = snapshot(open_group(settings, HEART), start_utc, end_utc)
    predictions = open_group(settings, HEART_PREDICTIONS)
    scored = snapshot(predictions, start_utc) if predictions.exists() else None
    if scored is not None and not scored.files:
        # A table with no file in the window (created by a run killed before its commit): no join.
        # Daft's Ray runner cannot repartition a scan of no files ("by 0 partitions").
        scored = None
    return ScoringPlan(settings=settings, window=window, scored=scored, model_version=str(model.version),
                       threshold=float(model.threshold), now=now)


def select_rows(window: Snapshot, scored: Snapshot | None, model_version: str, buckets: int) -> Selection:
    """Run the selection plan bucket by bucket; the driver holds one bit per row of the window's files
    and one bucket's locators at a time."""
    bits: dict[int, np.ndarray] = {}
    in_window = to_score = 0
    held = []
    for bucket in range(buckets if window.files else 0):
        ids = 0
        plan = _bucket_plan(window, scored, model_version, bucket, buckets)
        for batch in bounded_scans(plan.to_arrow_iter()):
            ids += batch.num_rows
            new = batch.filter(pc.invert(batch.column(DONE))).column(ROW).to_numpy()
            to_score += len(new)
            files, places = new >> 32, new & 0xFFFFFFFF
            for index in np.unique(files):
                mask = bits.setdefault(int(index), np.zeros(window.file_rows[index], dtype=bool))
                chosen = places[files == index]
                if chosen.size and chosen.max() >= len(mask):  # a log without row counts
                    mask = bits[int(index)] = np.concatenate(
                        [mask, np.zeros(int(chosen.max()) + 1 - len(mask), dtype=bool)])
                mask[chosen] = True
        in_window += ids
        held.append(ids)
    keep = {index: np.packbits(mask).tobytes() for index, mask in bits.items()}
    return Selection(keep=keep, in_window=in_window, to_score=to_score, bucket_ids=tuple(held))


def _bucket_plan(window: Snapshot, scored: Snapshot | None, model_version: str, bucket: int,
                 buckets: int) -> Any:
    """One bucket's ids: the first row of each (its locator) and whether it is scored already."""
    from daft import col, lit

    def mine(frame: Any) -> Any:
        return frame if buckets == 1 else frame.where(col("record_id").hash() % buckets == lit(bucket))

    ids = mine(window.read(("record_id",), locate=True))
    firsts = ids.groupby("record_id").agg(col(ROW).min())
    if scored is None:
        return firsts.select(col(ROW), lit(False).alias(DONE))
    done = (mine(scored.read(("record_id", "model_version")))
            .where(col("model_version") == lit(model_version))
            .select(col("record_id")).distinct().with_column(DONE, lit(True)))
    joined = firsts.join(done, on="record_id", how="left")
    return joined.select(col(ROW), col(DONE).fill_null(False).alias(DONE))


@dataclass
class BatchTally:
    """What the driver keeps of each scored row for the run's metrics: four narrow columns (about
    18 bytes a row), never the answers, so the driver's memory stays small beside the table's."""

    probability: list[np.ndarray] = field(default_factory=list)
    label: list[np.ndarray] = field(default_factory=list)
    prediction: list[np.ndarray] = field(default_factory=list)
    source: list[pa.Array] = field(default_factory=list)

    def watch(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        """The same stream, noting each batch on its way to the store."""
        def passing() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                self.probability.append(batch.column("probability").to_numpy(zero_copy_only=False))
                self.label.append(batch.column(LABEL.name).to_numpy(zero_copy_only=False))
                self.prediction.append(batch.column("prediction").to_numpy(zero_copy_only=False))
                self.source.append(batch.column("source").dictionary_encode())
                yield batch

        self.probability, self.label, self.prediction, self.source = [], [], [], []
        return pa.RecordBatchReader.from_batches(reader.schema, passing())

    def frame(self) -> pd.DataFrame:
        """The tallied rows as the frame :func:`heartrisk.jobs.infer.batch_metrics` reads."""
        if not self.probability:
            return pd.DataFrame({"probability": [], LABEL.name: [], "prediction": [], "source": []})
        return pd.DataFrame({
            "probability": np.concatenate(self.probability),
            LABEL.name: np.concatenate(self.label),
            "prediction": np.concatenate(self.prediction),
            "source": pd.Categorical(pa.chunked_array(
                [s.cast(pa.dictionary(pa.int32(), pa.string())) for s in self.source]).to_pandas()),
        })
