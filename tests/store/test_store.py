"""The Delta feature store: validated, atomic, idempotent inserts; time travel; concurrent writers."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.table import StoreError
from heartrisk.store.view import FeatureView
from heartrisk.validation import ValidationError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(ids: range, source: str = "kaggle", when: datetime = T0, **changes: object) -> pd.DataFrame:
    base = {
        "event_time": when, "source": source, "bmi": 24.0, "smoking": "No", "alcohol_drinking": "No",
        "stroke": "No", "physical_health": 0.0, "mental_health": 0.0, "diff_walking": "No",
        "sex": "Male", "age_category": "40-44", "race": "Asian", "diabetic": "No",
        "physical_activity": "Yes", "gen_health": "Good", "sleep_time": 7.0, "asthma": "No",
        "kidney_disease": "No", "skin_cancer": "No",
    }
    frame = pd.DataFrame([{**base, "record_id": f"r{i}", "heart_disease": i % 5 == 0} for i in ids])
    for column, value in changes.items():
        frame[column] = value
    return frame[HEART.columns]


def test_insert_then_read_back(settings: Settings) -> None:
    group = open_group(settings, HEART)
    result = group.insert(rows(range(10)))
    assert (result.inserted, result.skipped) == (10, 0)
    back = group.read()
    assert sorted(back["record_id"]) == sorted(f"r{i}" for i in range(10))
    assert list(back.columns) == HEART.columns
    assert str(back["event_time"].dt.tz) == "UTC"


def test_reinserting_is_a_no_op(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(10)))
    version = group.version()
    again = group.insert(rows(range(5, 15)))
    assert (again.inserted, again.skipped) == (5, 5)
    assert group.insert(rows(range(15))).inserted == 0
    assert group.version() == version + 1
    assert group.count() == 15


def test_a_bad_batch_writes_nothing(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(3)))
    version = group.version()
    batch = rows(range(3, 8))
    batch.loc[2, "bmi"] = 500.0
    with pytest.raises(ValidationError, match=r"row 2, column bmi: 500\.0 is out of range"):
        group.insert(batch)
    with pytest.raises(ValidationError, match="appears more than once"):
        group.insert(pd.concat([rows(range(20, 22)), rows(range(21, 23))]))
    with pytest.raises(ValidationError, match="source: 'web' is not one of"):
        group.insert(rows(range(30, 31), source="web"))
    with pytest.raises(ValidationError, match="column colour is not a column"):
        group.insert(rows(range(40, 41)).assign(colour="red"))
    assert group.version() == version
    assert group.count() == 3


def test_unknown_answers_are_stored_as_null(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(2), bmi=None, smoking=None))
    back = group.read()
    assert back["bmi"].isna().all() and back["smoking"].isna().all()


def test_time_travel_windows_and_sources(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(5), when=T0))
    first = group.version()
    before_second = datetime.now(UTC)
    time.sleep(0.05)
    group.insert(rows(range(5, 8), source="synthetic", when=T0 + timedelta(days=1)))
    assert group.count(version=first) == 5
    assert group.count(as_of=before_second) == 5
    assert group.count() == 8
    assert group.count(start=T0 + timedelta(hours=12)) == 3
    assert group.count(end=T0 + timedelta(hours=12)) == 5
    assert group.count(sources=["synthetic"]) == 3


def test_stats_per_feature(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(10), bmi=[20.0] * 5 + [None] * 5))
    stats = group.stats()
    assert stats["bmi"]["count"] == 5 and stats["bmi"]["nulls"] == 5 and stats["bmi"]["mean"] == 20.0
    assert stats["sex"]["values"] == {"Male": 10}
    assert stats["heart_disease"]["values"] == {"False": 8, "True": 2}


def test_reading_a_missing_group_says_what_to_do(settings: Settings) -> None:
    with pytest.raises(StoreError, match="heartrisk ingest"):
        open_group(settings, HEART).read()


def test_feature_view_split_is_real_only_stable_and_versioned(settings: Settings) -> None:
    """The record-id split (every row here has the same answers, so only it can split them)."""
    group = open_group(settings, HEART)
    group.insert(rows(range(2000)))
    group.insert(rows(range(2000, 2500), source="synthetic"))
    split = FeatureView(group).train_test_split(seed=3, by="record")
    assert split.table_version == group.version()
    assert list(split.X_test.columns) == list(FEATURE_NAMES)
    synthetic_ids = {f"r{i}" for i in range(2000, 2500)}
    assert not set(split.test_ids) & synthetic_ids
    assert (split.train_sources == "synthetic").sum() == 500
    assert 0.15 < len(split.test_ids) / 2000 < 0.25
    assert abs(split.y_test.mean() - 0.2) < 0.05
    # the split of old records does not move when the table grows
    group.insert(rows(range(2500, 3000)))
    later = FeatureView(group).train_test_split(seed=3, by="record")
    assert set(split.test_ids) <= set(later.test_ids)
    without = FeatureView(group).train_test_split(seed=3, include_synthetic=False, by="record")
    assert (without.train_sources == "synthetic").sum() == 0


def profiles(ids: range, source: str = "kaggle") -> pd.DataFrame:
    """Rows with 100 different answer profiles (by bmi and sleep time), each profile 20 times (a
    profile's copies carry both labels), in the order the ids come."""
    frame = rows(ids, source)
    frame["bmi"] = [20.0 + (i % 50) for i in ids]
    frame["sleep_time"] = [6.0 + (i // 50) % 2 for i in ids]
    frame["heart_disease"] = [(i // 100) % 5 == 0 for i in ids]
    return frame


def test_the_default_split_keeps_every_copy_of_the_same_answers_on_one_side(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(profiles(range(2000)))
    group.insert(profiles(range(2000, 2400), source="synthetic"))
    split = FeatureView(group).train_test_split(seed=3)
    assert split.by == "profile" and split.summary()["split_by"] == "profile"

    def answers(X: pd.DataFrame) -> set[tuple]:
        return set(X.itertuples(index=False, name=None))

    assert answers(split.X_test) and not answers(split.X_test) & answers(split.X_train)
    assert 0.05 < len(split.test_ids) / 2000 < 0.4  # 100 profiles: a coarse share
    # synthetic rows train only, and only with answers from the training side
    assert not set(split.test_ids) & {f"r{i}" for i in range(2000, 2400)}
    assert 0 < (split.train_sources == "synthetic").sum() < 400
    # stable as the table grows: a new copy of a test profile joins the test side
    group.insert(profiles(range(3000, 3100)))
    later = FeatureView(group).train_test_split(seed=3)
    assert set(split.test_ids) <= set(later.test_ids)
    assert answers(later.X_test) == answers(split.X_test)
    # the record-id split, for comparison, puts copies of one profile on both sides
    by_record = FeatureView(group).train_test_split(seed=3, by="record")
    assert answers(by_record.X_test) & answers(by_record.X_train)


def _insert_worker(home: str, start: int, count: int) -> None:
    group = open_group(Settings(home=Path(home)), HEART)
    for batch in range(count):
        first = start + batch * 10
        group.insert(rows(range(first, first + 10)))


def test_four_processes_inserting_at_once_lose_nothing(settings: Settings) -> None:
    open_group(settings, HEART).create()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_insert_worker, args=(str(settings.home), w * 1000, 5))
               for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    group = open_group(settings, HEART)
    ids = group.read(columns=["record_id"])["record_id"]
    assert len(ids) == 200 and ids.is_unique
    assert group.version() == 20


def test_polars_reads_the_same_table(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(50)))
    frame = pl.read_delta(group.uri)
    assert frame.columns == HEART.columns
    assert frame.height == 50


def batches_of(frame: pd.DataFrame, size: int, fail_after: int | None = None) -> pa.RecordBatchReader:
    """``frame`` as a stream of ``size``-row batches; with ``fail_after``, the stream breaks after that
    many batches the way an engine's stream does when a worker dies and the query is given up."""
    table = pa.Table.from_pandas(frame, schema=HEART.schema, preserve_index=False)

    def produce() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(table.to_batches(max_chunksize=size)):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("worker died")
            yield batch

    return pa.RecordBatchReader.from_batches(HEART.schema, produce())


def test_a_streamed_insert_is_one_commit_or_none(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(10)))
    version = group.version()
    with pytest.raises(Exception, match="worker died"):
        group.insert_stream(lambda: batches_of(rows(range(5, 400)), 50, fail_after=4))
    assert group.version() == version  # 200 rows had gone into the MERGE: none stored
    assert group.count() == 10
    result = group.insert_stream(lambda: batches_of(rows(range(5, 400)), 50))
    assert (result.inserted, result.skipped, result.version) == (390, 5, version + 1)
    back = group.read()
    assert sorted(back["record_id"]) == sorted(f"r{i}" for i in range(400))
    assert group.insert_stream(lambda: batches_of(rows(range(1)).iloc[:0], 50)).version == version + 1


def test_a_view_reads_a_stable_sample_of_a_large_table(settings: Settings) -> None:
    group = open_group(settings, HEART)
    group.insert(rows(range(2000)))
    whole, version = FeatureView(group).read()
    sample, same_version = FeatureView(group, max_rows=400).read()
    assert version == same_version and len(whole) == 2000
    assert 300 < len(sample) < 500  # a seeded coin per record: about 400
    assert set(sample["record_id"]) < set(whole["record_id"])
    again, _ = FeatureView(group, max_rows=400).read()
    assert list(again["record_id"]) == list(sample["record_id"])
    assert len(FeatureView(group, max_rows=5000).read()[0]) == 2000  # small enough: every row
    assert list(sample.columns) == list(whole.columns)
