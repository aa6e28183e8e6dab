"""Batch scoring as a Daft plan: the window of ``heart`` the champion has not scored, partition by
partition, on Daft's native runner or a Ray cluster.

The plan reads ``heart`` and ``heart_predictions`` where they are (a folder or ``s3://``; workers read
their own partitions, the driver never holds the table), leaves out the records this model version has
scored (an anti-join on record id), keeps one row per record id, and scores in batches of
``engine_batch_rows`` rows with a :class:`Scorer`: a Daft class, so each worker process builds it once
and loads the model version once, by number (not the alias, which may move during a run). The rows a
worker turns into pandas for the model are converted exactly as the local engine converts them
(Arrow typed to the group's schema, then ``to_pandas``), so both engines give the same probabilities.

The driver streams the scored rows into the store's one conflict-checked MERGE
(:meth:`heartrisk.store.table.FeatureGroup.insert_stream`): one commit per run, whatever the number of
workers, and none when a worker or the driver dies before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import daft
import numpy as np
import pandas as pd
import pyarrow as pa

from heartrisk.config import Settings
from heartrisk.engine.delta_source import read_group
from heartrisk.engine.runner import use_runner
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group

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
class ScoringPlan:
    """A lazy Daft query of the rows to store, and how to count the window it reads."""

    frame: Any
    window: Any
    model_version: str

    def batches(self) -> pa.RecordBatchReader:
        """The scored rows as a stream (runs the query; a new call runs it again)."""
        iterator = self.frame.to_arrow_iter(results_buffer_size=1)
        return pa.RecordBatchReader.from_batches(HEART_PREDICTIONS.schema, _typed(iterator))

    def rows_in_window(self) -> int:
        """Distinct record ids in the window (the local engine's ``rows_in_window``)."""
        return int(self.window.select("record_id").distinct().count_rows())


def _typed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    schema = HEART_PREDICTIONS.schema
    for batch in batches:
        if batch.num_rows:
            yield from pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()


def scoring_plan(settings: Settings, model: Any, start: datetime, end: datetime,
                 now: datetime) -> ScoringPlan:
    """The query scoring the rows of ``[start, end)`` that ``model`` has not scored, as of ``now``."""
    from daft import col, lit

    use_runner(settings)
    start_utc, end_utc = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    window = read_group(open_group(settings, HEART), READ_COLUMNS, start_utc, end_utc)
    rows = window
    predictions = open_group(settings, HEART_PREDICTIONS)
    if predictions.exists():
        scored = (read_group(predictions, ("record_id", "model_version", "event_time"), start_utc)
                  .where(col("model_version") == lit(str(model.version))).select("record_id"))
        rows = rows.join(scored, on="record_id", how="anti")
    # A record id stored twice in heart (doctor --repair removes it) is scored once.
    rows = rows.drop_duplicates("record_id").into_batches(settings.engine_batch_rows)
    scorer = Scorer(settings, str(model.version))  # built on each worker, at its first batch
    probability = scorer.probability(*[col(name) for name in FEATURE_NAMES])
    frame = rows.select(
        col("record_id"), col("event_time"),
        lit(pd.Timestamp(now).tz_convert("UTC").to_pydatetime()).alias("predicted_at"),
        lit(str(model.version)).alias("model_version"),
        probability.alias("probability"),
        (probability >= lit(float(model.threshold))).alias("prediction"),
        lit(float(model.threshold)).alias("threshold"),
        col(LABEL.name), col("source"),
    )
    return ScoringPlan(frame=frame, window=window, model_version=str(model.version))


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
