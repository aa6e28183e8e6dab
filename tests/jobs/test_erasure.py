"""Erasure that reaches the models, and the synthesizer's consent scope.

One home (built once per module, then copied): a sample of Kaggle rows, shared submissions merged
into ``heart``, a quick classifier trained on them (champion), a synthesizer fitted with submissions
included (consent scope set; champion) and one fitted by default (registered only).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.jobs.daily import run_daily
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.synth_train import real_rows, train_synthesizer
from heartrisk.jobs.train import TrainSettings, train
from heartrisk.model.registry import MODEL_NAME, RegistryError, champion_version, promote
from heartrisk.monitoring.reads import erased_models
from heartrisk.runtime.status import collect_status
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.view import FeatureView, hash_fraction, profile_key
from heartrisk.synth.fit import SynthSettings
from heartrisk.synth.registry import (
    REGISTERED_MODEL,
    PrivacyRiskError,
    SynthesizerRetiredError,
    load_synthesizer,
    promote_synthesizer,
)
from heartrisk.synth.registry import champion_version as synth_champion
from heartrisk.tracking import ERASED_TAG
from heartrisk.tracking import client as registry_client
from heartrisk.web.dashboard.page import erasure_section
from support.web import ANSWERS

COMPLETE = {**ANSWERS, "physical_health": 3.0, "race": "White", "sleep_time": 7.0}  # CTGAN fits whole rows
NOW = datetime.now(UTC)
CONSENT_FROM = NOW - timedelta(days=1)  # submissions shared after this agreed to the synthesizer too


SHARED: dict[str, dict[str, Any]] = {}  # submission id -> its answers


def share(settings: Settings, count: int, when: datetime, start: int) -> list[str]:
    ids = []
    for i in range(count):
        answers = {**COMPLETE, "bmi": 20.0 + (start + i) / 4}
        ids.append(add_submission(settings, answers, (start + i) % 3 == 0,
                                  submitted_at=when + timedelta(seconds=i)))
        SHARED[ids[-1]] = answers
    return ids


def on_test(submission_id: str) -> bool:
    """Where the split by answers (seed 42, test share 0.2: the quick settings) puts a submission."""
    answers = pd.DataFrame([SHARED[submission_id]])[list(FEATURE_NAMES)]
    return bool(hash_fraction(profile_key(answers), 42)[0] < 0.2)


def train_side(ids: list[str]) -> list[str]:
    return [i for i in ids if not on_test(i)]


@pytest.fixture(scope="module")
def erasure_home(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(home=tmp_path_factory.mktemp("erasure") / "home")
    ingest(settings, sample_csv)
    before = share(settings, 12, NOW - timedelta(days=2), 0)  # before the consent scope changed
    after = share(settings, 30, NOW - timedelta(hours=2), 12)
    while not (train_side(after) and len(train_side(after)) < len(after)):  # one on each side
        after += share(settings, 5, NOW - timedelta(hours=1), len(after) + 12)
    merged = run_daily(settings, synthetic=0)
    assert merged.user_rows == len(before) + len(after), merged
    train(settings, TrainSettings.for_quick())  # v1, champion: learned from the train-side user rows
    consenting = Settings(home=settings.home, synth_submissions_from=CONSENT_FROM)
    included = train_synthesizer(consenting, SynthSettings.quick(epochs=1), show_progress=False)
    default = train_synthesizer(settings, SynthSettings.quick(epochs=1), show_progress=False, promote=False)
    assert included.promoted, included.decision
    return {"settings": settings, "before": before, "after": after, "included": included, "default": default}


@pytest.fixture
def home(erasure_home: dict[str, Any], settings: Settings) -> Settings:
    shutil.copytree(erasure_home["settings"].home, settings.home)
    return settings


def tags_of(settings: Settings, model: str, version: str) -> dict[str, str]:
    return dict(registry_client(settings).get_model_version(model, version).tags)


def test_user_rows_stay_out_of_a_default_fit_and_the_lineage_says_so(erasure_home: dict[str, Any]) -> None:
    settings, default, included = erasure_home["settings"], erasure_home["default"], erasure_home["included"]
    tags = tags_of(settings, REGISTERED_MODEL, default.version)
    assert (tags["lineage_sources"], tags["lineage_user_rows"]) == ("kaggle", "0")
    assert "lineage_user_until" not in tags and int(tags["lineage_table_version"]) >= 1
    run = registry_client(settings).get_run(default.run_id)
    assert run.data.params["fit_sources"] == "kaggle" and run.data.params["fit_user_rows"] == "0"
    # With the consent scope set, only submissions shared since then join, on the training side.
    consenting = Settings(home=settings.home, synth_submissions_from=CONSENT_FROM)
    rows = real_rows(consenting, SynthSettings.quick())
    assert rows.lineage.user_rows == len(train_side(erasure_home["after"]))
    assert rows.lineage.sources == ("kaggle", "user")
    tags = tags_of(settings, REGISTERED_MODEL, included.version)
    assert tags["lineage_sources"] == "kaggle,user"
    assert int(tags["lineage_user_rows"]) == len(train_side(erasure_home["after"]))
    assert tags["lineage_submissions_from"] == CONSENT_FROM.isoformat()
    # The classifier may learn from every consented submission on its training side.
    classifier = tags_of(settings, MODEL_NAME, "1")
    shared = erasure_home["before"] + erasure_home["after"]
    assert int(classifier["lineage_user_rows"]) == len(train_side(shared))
    assert classifier["lineage_split_by"] == "profile"
    # the test's notion of the training side is the split's own
    split = FeatureView(open_group(settings, HEART)).train_test_split(test_size=0.2, seed=42)
    users = split.train_ids[split.train_ids.str.startswith("user:")]
    assert set(users) == {f"user:{i}" for i in train_side(shared)}


@pytest.mark.reliability  # fits a classifier and a synthesizer more (about 5 min under load 14)
def test_forget_marks_the_models_that_learned_from_the_row_and_a_retrain_replaces_them(
        home: Settings, erasure_home: dict[str, Any]) -> None:
    included, default = erasure_home["included"].version, erasure_home["default"].version
    after = erasure_home["after"]
    outside = next(i for i in after if on_test(i))
    victim = train_side(after)[0]
    runner = CliRunner()

    # A row on the test side taught no model: nothing is marked.
    spared = runner.invoke(app, ["forget", outside])
    assert spared.exit_code == 0, spared.output
    assert "no registered model learned from it" in " ".join(spared.output.split())
    assert ERASED_TAG not in tags_of(home, MODEL_NAME, "1")

    result = runner.invoke(app, ["forget", victim])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"classifier version(s) 1 and synthesizer version(s) {included} learned from it" in said
    assert "champion classifier v1 is replaced at the next scheduled retrain" in said
    assert ERASED_TAG in tags_of(home, MODEL_NAME, "1")
    assert ERASED_TAG in tags_of(home, REGISTERED_MODEL, included)
    assert ERASED_TAG not in tags_of(home, REGISTERED_MODEL, default)  # fitted without user rows
    assert victim not in open_group(home, HEART).read(columns=["record_id"])["record_id"].str[5:].tolist()

    # Until a clean model is champion: status and the dashboard say so; nothing brings v1 back.
    shown = collect_status(home)["models_that_learned_from_erased_rows"]
    assert shown["serving"] and shown["champion_classifier"] == "1" and shown["classifier_versions"] == "1"
    assert "learned from erased rows" in shown["note"]
    from heartrisk.monitoring.snapshot import Snapshot

    page = erasure_section(Snapshot(generated_at=NOW, hours=24, erasure=erased_models(home)))
    assert "Models that learned from erased rows" in page and "v1" in page
    status = runner.invoke(app, ["status"])
    assert "models_that_learned_from_erased_rows" in status.output and "champion_classifier" in status.output
    # The retired synthesizer feeds nothing: daily merges only, and it cannot be promoted again.
    with pytest.raises(SynthesizerRetiredError, match="learned from rows erased"):
        load_synthesizer(home)
    daily = run_daily(home, synthetic=10, require_synthesizer=False)
    assert daily.synthetic_rows == 0 and daily.no_synthesizer
    with pytest.raises(PrivacyRiskError, match="cannot be champion again"):
        promote_synthesizer(home, included)

    # The retrain (here at once; the scheduled one goes through the same gate) replaces both.
    retrained = runner.invoke(app, ["forget", victim, "--retrain-now"])
    assert retrained.exit_code == 0, retrained.output
    assert "champion v1 learned from erased rows" in " ".join(retrained.output.split())
    assert champion_version(home) == "2"
    assert ERASED_TAG not in tags_of(home, MODEL_NAME, "2")
    assert synth_champion(home) not in (None, included)
    after_retrain = erased_models(home)
    assert not after_retrain["serving"] and after_retrain["classifier_versions"] == "1"
    with pytest.raises(RegistryError, match="cannot be champion again"):
        promote(home, "1")
    assert load_synthesizer(home).version == synth_champion(home)
