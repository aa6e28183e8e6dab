"""The monitoring figures over ``heart_predictions`` computed by Daft, for a table too large for one
process.

The report (:mod:`heartrisk.monitoring.snapshot`) needs, over every prediction: counts by model version
and source, the champion's metrics and confusion matrix, performance per day and version (ROC-AUC
included), and the latest rows. All of them follow exactly from one aggregate, the number of
predictions per (day, model version, source, probability, decision, truth): its size is bounded by the
days, versions and distinct probabilities a model gives (a tree ensemble gives a finite set), not by the
rows, and :mod:`heartrisk.monitoring.metrics` reads it with its ``count`` column as weights. The recent
window (hours) and the latest rows are read as rows: they are small by nature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa

from heartrisk.config import Settings
from heartrisk.engine.delta_source import read_group
from heartrisk.engine.runner import use_runner
from heartrisk.features import LABEL
from heartrisk.store.groups import HEART_PREDICTIONS, open_group

#: How many predictions a line of the aggregate stands for: the weight column
#: :mod:`heartrisk.monitoring.metrics` reads (its ``COUNT``; the engine sits below monitoring).
COUNT = "count"
#: The columns of the aggregate (``event_time`` is the UTC day, so per-day code reads it unchanged).
TIE_COLUMNS = ["event_time", "model_version", "source", "probability", "prediction", LABEL.name]


@dataclass(frozen=True)
class PredictionAggregates:
    """What the report reads of ``heart_predictions``, computed by the engine."""

    ties: pd.DataFrame          # TIE_COLUMNS + count, every prediction
    window: pd.DataFrame        # the champion's rows of the recent window, as rows
    recent: pd.DataFrame        # the champion's latest rows, never a user's
    last_predicted_at: pd.Timestamp | None


def prediction_aggregates(settings: Settings, model_version: str, start: datetime,
                          recent_rows: int) -> PredictionAggregates:
    """Aggregate ``heart_predictions`` with Daft: every prediction counted, the window and the latest
    ``recent_rows`` of ``model_version`` (events from ``start`` on for the window) read as rows."""
    from daft import col, lit
    from daft.functions import date_trunc

    use_runner(settings)
    group = open_group(settings, HEART_PREDICTIONS)
    if not group.exists():
        empty = pd.DataFrame(columns=HEART_PREDICTIONS.columns)
        return PredictionAggregates(pd.DataFrame(columns=[*TIE_COLUMNS, COUNT]), empty, empty, None)
    table = read_group(group, HEART_PREDICTIONS.columns)
    ties = (table.with_column("event_time", date_trunc("1 day", col("event_time")))
            .groupby(*TIE_COLUMNS).agg(col("record_id").count().alias(COUNT)))
    mine = table.where(col("model_version") == lit(str(model_version)))
    start_utc = pd.Timestamp(start).tz_convert("UTC").to_pydatetime()
    window = mine.where(col("event_time") >= lit(start_utc))
    recent = (mine.where(col("source") != lit("user"))
              .sort([col("predicted_at"), col("event_time")], desc=[True, True]).limit(recent_rows))
    last = mine.agg(col("predicted_at").max().alias("last")).to_pydict()["last"]
    return PredictionAggregates(ties=_typed(ties.to_arrow()), window=_typed(window.to_arrow()),
                                recent=_typed(recent.to_arrow()),
                                last_predicted_at=pd.Timestamp(last[0]) if last and last[0] else None)


def _typed(table: pa.Table) -> pd.DataFrame:
    """A Daft result as pandas with the group's types (Daft returns large strings, UTC as given)."""
    schema = HEART_PREDICTIONS.schema
    fields = [schema.field(name) for name in table.column_names if name in schema.names]
    frame = table.select([f.name for f in fields]).cast(pa.schema(fields)).to_pandas()
    for name in table.column_names:
        if name not in schema.names:
            frame[name] = table.column(name).to_pandas()
    return frame
