"""Rows of `heart` for the batch-inference tests: when the ingested sample happened, and new rows."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from heartrisk.config import Settings
from heartrisk.store.groups import HEART, open_group


def kaggle_time(settings: Settings) -> datetime:
    """When the ingested sample's rows happened (ingest backdates them by a day)."""
    times = open_group(settings, HEART).read(columns=["event_time"])["event_time"]
    return times.max().to_pydatetime()


def add_rows(settings: Settings, n: int, source: str, at: datetime, seed: int = 0) -> pd.DataFrame:
    """New `heart` rows (answers borrowed from stored ones) as the daily pipeline would add them."""
    heart = open_group(settings, HEART)
    rows = heart.read().sample(n=n, random_state=seed).reset_index(drop=True)
    if source == "synthetic":  # a copy of a real row is never listed (issue 14): BMI off by a third decimal
        rows["bmi"] = rows["bmi"] + 0.003
    rows["record_id"] = [f"{source}:test:{seed}:{i}" for i in range(n)]
    rows["source"] = source
    rows["event_time"] = pd.Timestamp(at)
    assert heart.insert(rows).inserted == n
    return rows
