"""`heartrisk forget`: a submission removed from every table and its history (time travel included),
the dashboard listing no person's row, a bad id changing nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.jobs.daily import run_daily
from heartrisk.jobs.forget import check_submission_id
from heartrisk.jobs.infer import run_infer
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, HEART_USER, QUARANTINE, open_group
from heartrisk.store.table import FeatureGroup
from heartrisk.web.guard import auth
from heartrisk.web.server import BackgroundServer
from support.files import files_holding
from support.reliability import PASSWORD
from support.web import ANSWERS

MONITOR_API = ["summary", "model", "performance", "confusion", "drift", "volume", "recent", "shap",
               "synthesizer"]


def ids_in(group: FeatureGroup, column: str, **read: object) -> set[str]:
    return set(group.read(columns=[column], **read)[column]) if group.exists() else set()


def every_version_without(group: FeatureGroup, column: str, value: str) -> int:
    """Reads every version still readable; fails if one holds ``value``. Returns how many were."""
    readable = 0
    for version in range(group.version() + 1):
        try:
            frame = group.read(version=version, columns=[column])
        except Exception:
            continue  # vacuumed away: nothing to read back
        readable += 1
        assert value not in set(frame[column]), f"{group.spec.table_name} version {version} holds it"
    return readable


def test_only_a_uuid_is_accepted_as_a_submission_id() -> None:
    good = str(uuid.uuid4())
    assert check_submission_id(good.upper()) == good
    for bad in ["", "42", "x' OR '1'='1", f"{good}' OR '1'='1", f"{good[:-1]}g", "{" + good + "}",
                good.replace("-", "")]:
        with pytest.raises(ValueError, match="is not a submission id"):
            check_submission_id(bad)


def test_forget_removes_a_submission_everywhere_for_good(trained: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = trained
    victim, *others = [add_submission(settings, {**ANSWERS, "bmi": 25.0 + i}, i % 2 == 0) for i in range(3)]
    held = add_submission(settings, {}, True)  # quarantined (no answers): forget must find it there too
    merged = run_daily(settings, synthetic=0)
    assert (merged.user_rows, merged.quarantined) == (3, 1)
    scored = run_infer(settings, hours=1, now=datetime.now(UTC) + timedelta(minutes=1))
    assert scored.inserted == 3  # the three user rows (the Kaggle rows are older than an hour)
    reference = settings.monitoring_dir / "reference" / "model-test.parquet"
    reference.parent.mkdir(parents=True, exist_ok=True)  # a cached sample holding the person's row
    pd.DataFrame({"record_id": [f"user:{victim}", "kaggle:x:2"], "bmi": [25.0, 30.0]}).to_parquet(reference)

    groups = {"user": open_group(settings, HEART_USER), "heart": open_group(settings, HEART),
              "predictions": open_group(settings, HEART_PREDICTIONS),
              "quarantine": open_group(settings, QUARANTINE)}
    record = f"user:{victim}"
    assert victim in ids_in(groups["user"], "submission_id")
    assert record in ids_in(groups["heart"], "record_id")
    assert record in ids_in(groups["predictions"], "record_id")
    counts = {name: group.count() for name, group in groups.items()}
    before = datetime.now(UTC)

    # The dashboard shows aggregates: no person's row, by id, anywhere in its API.
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for name in MONITOR_API:
            answer = client.get(f"/api/v1/monitor/{name}", auth=("admin", PASSWORD))
            assert answer.status_code == 200 and "user:" not in answer.text, name

    result = CliRunner().invoke(app, ["forget", victim])
    assert result.exit_code == 0, result.output
    assert "removed 3 row(s)" in " ".join(result.output.split())
    assert victim not in ids_in(groups["user"], "submission_id")
    assert record not in ids_in(groups["heart"], "record_id")
    assert record not in ids_in(groups["predictions"], "record_id")
    assert {name: group.count() for name, group in groups.items()} == {
        "user": counts["user"] - 1, "heart": counts["heart"] - 1,
        "predictions": counts["predictions"] - 1, "quarantine": counts["quarantine"]}
    assert set(others) <= ids_in(groups["user"], "submission_id")

    # Time travel: every version still readable lacks it, and no file of the store holds the id.
    for name, group in groups.items():
        column = "submission_id" if name in ("user", "quarantine") else "record_id"
        value = victim if column == "submission_id" else record
        assert every_version_without(group, column, value) >= 1
        try:  # as of a moment before the forget: gone too (an error, or a later version's rows)
            assert value not in set(group.read(as_of=before - timedelta(seconds=30))[column])
        except AssertionError:
            raise
        except Exception:
            pass
    assert files_holding(Path(settings.store_root), victim.encode()) == []
    assert pd.read_parquet(reference)["record_id"].tolist() == ["kaggle:x:2"]

    # The quarantined one goes too; a second forget finds nothing; a bad id changes nothing.
    assert CliRunner().invoke(app, ["forget", held]).exit_code == 0
    assert held not in ids_in(groups["quarantine"], "submission_id")
    again = CliRunner().invoke(app, ["forget", victim])
    assert again.exit_code == 0 and "no rows held" in again.output
    versions = {name: group.version() for name, group in groups.items()}
    injected = CliRunner().invoke(app, ["forget", "x' OR '1'='1"])
    assert injected.exit_code == 2 and "is not a submission id" in injected.output
    assert {name: group.version() for name, group in groups.items()} == versions
    assert run_daily(settings, synthetic=0).user_rows == 0  # and the merge does not bring it back


def test_a_row_merged_while_forget_ran_is_not_called_never_merged(ingested: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The daily merge stores the submission in heart after forget looked for it and before the
    delete. Before: "removed 1 row (… heart_v1 1)" and, in the same message, "it was never merged
    into heart, so no model learned from it"."""
    from heartrisk.jobs import forget as forget_job

    submission = add_submission(ingested, ANSWERS, True)
    look = forget_job.erased_row

    def looked_then_merged(settings: Settings, submission_id: str) -> object:
        row = look(settings, submission_id)
        assert row is None and run_daily(ingested, synthetic=0).user_rows == 1
        return row

    monkeypatch.setattr(forget_job, "erased_row", looked_then_merged)
    result = forget_job.forget(ingested, submission)
    assert result.removed["heart_v1"] == 1
    assert "never merged" not in result.message
    assert "merged into heart while forget ran" in result.message
