"""The privacy gate in the job: a real quick fit passes and its report is logged and shown; a
synthesizer that copies its fit rows is registered but kept out, and only an operator who accepts the
risk, saying why, can make it champion."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.jobs import synth_train
from heartrisk.jobs.synth_train import train_synthesizer
from heartrisk.synth.fit import FitResult, SynthSettings, data_bounds, data_precision, training_frame
from heartrisk.synth.registry import (
    ACCEPTED_TAG,
    CHAMPION,
    PRIVACY_TAG,
    REGISTERED_MODEL,
    synthesizer_status,
)
from heartrisk.synth.synthesizer import Synthesizer, SynthInfo
from heartrisk.tracking import client as registry_client
from support.attacks import CopyingModel


def test_a_real_quick_fit_passes_and_its_report_is_logged_and_shown(quick_synthesizer: Settings) -> None:
    client = registry_client(quick_synthesizer)
    entry = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    assert entry.tags[PRIVACY_TAG].startswith("passed: membership AUC"), entry.tags[PRIVACY_TAG]
    metrics = client.get_run(entry.run_id).data.metrics
    assert 0.4 < metrics["privacy_membership_auc"] <= 0.55
    assert metrics["privacy_dcr_overfitting_protection"] >= 0.9
    assert metrics["privacy_exact_copy_share"] <= metrics["privacy_exact_copy_share_real"] + 0.02
    for key in ("privacy_membership_auc", "privacy_dcr_overfitting_protection", "privacy_exact_copy_share"):
        assert float(entry.tags[key]) == pytest.approx(metrics[key], abs=1e-4)  # copied onto the version
    folder = Path(mlflow.artifacts.download_artifacts(run_id=entry.run_id, artifact_path="privacy",
                                                      tracking_uri=quick_synthesizer.tracking_uri))
    saved = json.loads((folder / "privacy.json").read_text())
    assert saved["metrics"]["privacy_membership_auc"] == pytest.approx(metrics["privacy_membership_auc"])
    assert saved["limits"]["max_membership_auc"] == 0.55 and saved["sizes"]["attacked_members"] == 2_000

    privacy = synthesizer_status(quick_synthesizer)["privacy"]
    assert privacy["membership attack AUC (0.5: no leak)"]["passed"] is True
    status = CliRunner().invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    text = " ".join(status.output.split())
    assert "synthesizer v1 privacy" in text and "membership attack" in text and "real vs real" in text
    assert "FAIL" not in text
    # the dashboard draws the same rows from the same registry read
    from heartrisk.monitoring.reads import synthesizer_quality
    from heartrisk.web.dashboard.page import privacy_section

    page = privacy_section(synthesizer_quality(quick_synthesizer))
    assert "Synthesizer privacy" in page and "membership attack AUC" in page and "passed: membership" in page
    assert ">fail<" not in page


def copying_fit(real: Any, _selection: Any, settings: SynthSettings, on_epoch: Any = None) -> FitResult:
    """The fit step replaced by a synthesizer that memorised its rows (everything after it is real)."""
    rows = training_frame(real)
    info = SynthInfo(feature_names=list(rows.columns[:-1]), label=rows.columns[-1], bounds=data_bounds(real),
                     precision=data_precision(real), positive_rate=float((rows.iloc[:, -1] == "Yes").mean()),
                     fit_rows=len(rows), epochs=settings.epochs, best_epoch=settings.epochs, best_score=None,
                     trained_at="2026-01-01T00:00:00+00:00", settings=settings.model_dump())
    return FitResult(Synthesizer(CopyingModel(rows), info))


@pytest.fixture
def leaking(ingested: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(synth_train, "fit_synthesizer", copying_fit)
    return ingested


def test_a_copying_synthesizer_is_kept_out_and_needs_an_accepted_risk(leaking: Settings) -> None:
    runner = CliRunner()
    trained = runner.invoke(app, ["synth", "train", "--quick"])
    assert trained.exit_code == 0, trained.output
    said = " ".join(trained.output.split())
    assert "kept out: privacy failed: membership AUC" in said and "FAIL" in said
    assert "heartrisk synth promote 1 --accept-privacy-risk --reason" in said
    client = registry_client(leaking)
    tags = client.get_model_version(REGISTERED_MODEL, "1").tags
    assert tags[PRIVACY_TAG].startswith("failed: ") and "exact copies" in tags[PRIVACY_TAG]
    assert not synthesizer_status(leaking)["registered"]  # nothing feeds `heart` from it

    refused = runner.invoke(app, ["synth", "promote", "1"])
    assert refused.exit_code == 2 and "failed the privacy gate" in refused.output
    assert "--accept-privacy-risk" in refused.output
    no_reason = runner.invoke(app, ["synth", "promote", "1", "--accept-privacy-risk"])
    assert no_reason.exit_code == 2 and "needs --reason" in no_reason.output
    assert not synthesizer_status(leaking)["registered"]

    accepted = runner.invoke(app, ["synth", "promote", "1", "--accept-privacy-risk", "--reason",
                                   "demo home, public rows only"])
    assert accepted.exit_code == 0, accepted.output
    tags = client.get_model_version(REGISTERED_MODEL, "1").tags
    assert f"accepted by {getpass.getuser()}: demo home, public rows only" in tags[ACCEPTED_TAG]
    assert "privacy risk accepted" in tags["promoted"]
    status = synthesizer_status(leaking)
    assert status["version"] == "1" and "demo home" in status["privacy_risk_accepted"]


def test_the_job_gate_and_a_second_leaking_fit(leaking: Settings) -> None:
    """Through the job: the same copier, with a champion already there, stays out whatever its quality."""
    first = train_synthesizer(leaking, SynthSettings.quick(), show_progress=False)
    assert not first.promoted and not first.privacy_passed
    assert first.metrics["privacy_exact_copy_share"] == 1.0
    assert first.metrics["quality_overall"] > 0.9  # copies look like the data: quality cannot stop them
