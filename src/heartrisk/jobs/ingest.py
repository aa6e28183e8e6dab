"""Ingest: the Kaggle CSV into the ``heart`` feature group, exactly once per line of the file.

record_ids are ``kaggle:<first 16 hex of the file's sha256>:<line>`` (:mod:`heartrisk.store.groups`),
so ingesting the same file again adds nothing and a killed ingest, re-run, ends where one clean run
would. Backfilled rows get an event_time one day before the ingest, as the original project did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.progress import progress_bar
from heartrisk.sources.kaggle import FIRST_DATA_LINE, KaggleCsv, locate_csv, read_kaggle_csv
from heartrisk.store.groups import HEART, kaggle_record_ids, open_group

BACKFILL_LAG = timedelta(days=1)


@dataclass(frozen=True)
class IngestResult:
    path: Path
    rows_in_file: int
    inserted: int
    skipped: int
    table_version: int
    positive_rate: float

    @property
    def summary(self) -> str:
        """One line for the job record and the log."""
        return (f"{self.path.name}: {self.inserted:,} rows added, {self.skipped:,} already stored "
                f"(heart v{self.table_version})")


def kaggle_rows(parsed: KaggleCsv, now: datetime) -> pd.DataFrame:
    """The ``heart`` rows for a checked file: ids from the file hash and line, backfilled time."""
    frame = parsed.frame
    lines = pd.RangeIndex(FIRST_DATA_LINE, FIRST_DATA_LINE + len(frame))
    rows = pd.DataFrame({
        "record_id": kaggle_record_ids(parsed.sha256, lines),
        "event_time": pd.Timestamp(now - BACKFILL_LAG),
        "source": "kaggle",
    })
    return pd.concat([rows, frame], axis=1)


def ingest(settings: Settings, csv_path: Path | None = None,
           now: datetime | None = None) -> IngestResult:
    """Locate (or download) the file, check every cell, insert the new rows in one commit."""
    settings.ensure_home()
    path = locate_csv(settings, csv_path)
    with progress_bar() as bar:
        task = bar.add_task(f"reading {path.name}", total=None)
        parsed = read_kaggle_csv(path, on_rows=lambda n: bar.advance(task, n))
        bar.update(task, total=len(parsed.frame), description=f"read {path.name}")
        parsed.coerced.raise_if_any(str(path), first_line=FIRST_DATA_LINE)
        writing = bar.add_task("writing heart_v1", total=1)
        result = open_group(settings, HEART).insert(kaggle_rows(parsed, now or utc_now()))
        bar.advance(writing)
    return IngestResult(
        path=path, rows_in_file=len(parsed.frame), inserted=result.inserted,
        skipped=result.skipped, table_version=result.version,
        positive_rate=float(parsed.frame["heart_disease"].mean()),
    )
