"""After `heartrisk forget`, every job still runs (issue 12, finding 2).

A Delta DELETE (deltalake 1.6.6) rewrites the file that held the row with ``string_view`` columns; a
filtered pyarrow read of such a file holding more than one ``source`` failed (`no kernel matching
input types (string, string_view)`), so the first erasure request stopped `daily` and `synth train`
for good. The store's read path now works on any file delta-rs writes; this test follows a forget
with the whole learning loop as the CLI runs it: `daily`, `synth train --quick`, `train --quick`
and `infer`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.runtime.status import collect_status
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, HEART_USER, open_group
from heartrisk.store.view import FeatureView

ANSWERS = {"bmi": 27.5, "smoking": "No", "sex": "Female", "age_category": "55-59", "gen_health": "Good"}


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"heartrisk {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return " ".join(result.output.split())


def heart_rows(sources: list[str], n: int, at: datetime) -> pd.DataFrame:
    return pd.DataFrame({
        "record_id": [f"{s}:sv:{i}" for i, s in enumerate(sources * n)], "event_time": at,
        "source": sources * n, **dict.fromkeys(FEATURE_NAMES), "heart_disease": False})


def test_every_reader_works_on_the_files_a_delete_rewrites(settings: Settings) -> None:
    """The store's own reads after a DELETE left a file holding string_view columns and several
    sources: filtered by source, by time, counted, summarised, split, and inserted into again."""
    heart = open_group(settings, HEART)
    now = datetime.now(UTC)
    heart.insert(heart_rows(["kaggle", "synthetic", "user"], 4, now - timedelta(hours=1)))
    assert heart.delete("record_id = 'user:sv:2'") == 1
    rewritten = [pq.read_schema(uri) for uri in heart.table().file_uris()]
    assert any(str(s.field("source").type) == "string_view" for s in rewritten)  # the case at hand

    assert len(heart.read(sources=["user"])) == 3
    assert len(heart.read(sources=["kaggle", "synthetic"], start=now - timedelta(hours=2), end=now)) == 8
    assert heart.count(sources=["synthetic"]) == 4
    assert heart.read_arrow(columns=["source"]).schema.field("source").type == "string"
    assert heart.stats(sources=["user"])["source"]["values"] == {"user": 3}
    frame, _ = FeatureView(heart, sources=("kaggle", "user")).read()
    assert len(frame) == 7
    assert heart.insert(heart_rows(["user"], 1, now).assign(record_id="user:sv:new")).inserted == 1
    assert heart.insert(heart_rows(["user"], 1, now).assign(record_id="user:sv:new")).skipped == 1
    assert collect_status(settings)["feature_groups"]["heart_v1"]["rows_by_source"]["user"] == 4


def test_forget_then_daily_synth_train_train_and_infer(quick_synthesizer: Settings) -> None:
    """The issue's repro, then the whole learning loop: nothing fails after an erasure."""
    settings = quick_synthesizer
    kept, forgotten = (add_submission(settings, {**ANSWERS, "bmi": 27.5 + i}, i == 0) for i in range(2))
    assert "2 user submissions" in run("daily", "--synthetic", "5")
    assert "removed 2 row(s)" in run("forget", forgotten)

    assert "0 user submissions" in run("daily", "--synthetic", "5")
    assert "heart-synthesizer version" in run("synth", "train", "--quick")
    assert "version" in run("train", "--quick")
    assert "scored" in run("infer", "--hours", "24")
    users = open_group(settings, HEART).read(sources=["user"], columns=["record_id"])["record_id"]
    assert set(users) == {f"user:{kept}"}
    predicted = set(open_group(settings, HEART_PREDICTIONS).read(columns=["record_id"])["record_id"])
    assert f"user:{kept}" in predicted and f"user:{forgotten}" not in predicted
    assert forgotten not in set(open_group(settings, HEART_USER).read()["submission_id"])
    assert "0 user submissions" in run("daily", "--synthetic", "5")  # and the next day's run too
