"""`forget` on a store other machines share: it wins against a stream of submission commits, and no
other machine's cache keeps the forgotten row (issue 15)."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from heartrisk.config import Settings
from heartrisk.jobs.forget import forget
from heartrisk.model.registry import champion_model
from heartrisk.monitoring.reads import reference_folder, reference_sample
from heartrisk.sources.submissions import add_submission, insert_submissions, submission_row
from heartrisk.store.groups import HEART_USER, open_group
from support.web import ANSWERS


def other_machine(settings: Settings, tmp_path: Path) -> Settings:
    """A second home (own locks, own caches) on the same store and registry."""
    return Settings(home=tmp_path / "machine-b", store_uri=settings.store_root,
                    mlflow_uri=settings.tracking_uri)


def test_forget_during_a_stream_of_commits_from_another_machine(trained: Settings, tmp_path: Path) -> None:
    """Before: `CommitFailedError: a concurrent transaction ...` as a traceback, and the row stayed."""
    other = other_machine(trained, tmp_path)
    target = add_submission(trained, ANSWERS, True)
    stop = threading.Event()
    stored: list[int] = []
    sent: list[str] = []  # the ids whose insert returned (committed)

    def stream() -> None:  # the other machine's serve replica: one commit after another
        while not stop.is_set():
            row = submission_row(other, ANSWERS, False)
            stored.append(insert_submissions(other, row).inserted)
            sent.extend(row["submission_id"])

    writer = threading.Thread(target=stream)
    writer.start()
    forgets = 0
    try:  # at least three forgets, and on until the stream has committed three rows around them
        while forgets < 3 or (len(sent) < 3 and forgets < 50):
            result = forget(trained, target)
            forgets += 1
    finally:
        stop.set()
        writer.join(60)
    assert result.tables
    user = open_group(trained, HEART_USER).read(columns=["submission_id"])["submission_id"]
    assert target not in set(user)
    # Nothing the stream stored was lost, nothing stored twice. (The count an insert reports can fall
    # short: a MERGE redone after the purge moved the log may find its own first commit landed and
    # report 0; seen in 2 runs of 6 on 2 cores, data right. Known defect, see the stop note.)
    assert sorted(user) == sorted(sent) and len(sent) >= 3
    assert sum(stored) <= len(user)


def test_a_cached_reference_sample_on_another_machine_loses_the_forgotten_row(trained: Settings,
                                                                            tmp_path: Path) -> None:
    other = other_machine(trained, tmp_path)
    model = champion_model(other)
    sample = reference_sample(other, model)
    (cached,) = reference_folder(other).glob("*.parquet")
    # The cached sample holds a person's row (as it would if their submission had been trained on).
    target = add_submission(trained, ANSWERS, True)
    person = sample.iloc[[0]].assign(record_id=f"user:{target}")
    pq.write_table(pa.Table.from_pandas(pd.concat([sample, person], ignore_index=True),
                                        preserve_index=False), cached)
    assert f"user:{target}" in set(reference_sample(other, model)["record_id"])

    forget(trained, target)  # on machine A: machine B's files are out of its reach

    again = reference_sample(other, model)
    assert f"user:{target}" not in set(again["record_id"])
    assert len(again) == len(sample) and not cached.exists()
