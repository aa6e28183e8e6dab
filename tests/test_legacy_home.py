"""A home made by the code before the package moved still serves its champion and samples its synthesizer.

``tests/fixtures/legacy_home/`` was written by ``tests/fixtures/make_legacy_home.py`` at commit 1c3ac4e
(flat layout): its classifier is a cloudpickle naming ``heartrisk.model.RiskModel``, its synthesizer
version records ``heartrisk.synth_registry`` as its MLflow loader module. Both paths must keep working
for every registry written before the move; the answers must be the ones the old code gave.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import httpx
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.jobs.daily import run_daily
from heartrisk.model.registry import champion_model
from heartrisk.store.groups import HEART, open_group
from heartrisk.synth.registry import load_synthesizer
from heartrisk.web.server import BackgroundServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def maker() -> ModuleType:
    """The script that made the fixture (for its placeholder and relocation), loaded from its file."""
    spec = importlib.util.spec_from_file_location("make_legacy_home", FIXTURES / "make_legacy_home.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def legacy(settings: Settings) -> Settings:
    """This test's own copy of the legacy home, its MLflow database pointed at where it now lives."""
    script = maker()
    shutil.copytree(script.TARGET, settings.home)
    changed = script.relocate(settings.home / "mlflow.db", script.PLACEHOLDER, str(settings.home.absolute()))
    assert changed > 0
    return settings


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURES / "legacy_home_expected.json").read_text())


def test_the_fixture_was_made_by_the_old_code_and_is_small(expected: dict) -> None:
    home = maker().TARGET
    pickled = next(home.rglob("model.pkl")).read_bytes()
    assert b"heartrisk.model" in pickled and b"RiskModel" in pickled
    assert "loader_module: heartrisk.synth_registry" in next(home.rglob("synthesizer/MLmodel")).read_text()
    assert sum(p.stat().st_size for p in home.rglob("*") if p.is_file()) < 1_000_000
    assert expected["classifier_version"] == expected["synthesizer_version"] == "1"


def test_the_old_champion_loads_and_answers_as_before(legacy: Settings, expected: dict) -> None:
    model = champion_model(legacy)
    probe = pd.DataFrame(expected["probe_rows"])
    assert model.version == "1"
    assert model.threshold == pytest.approx(expected["threshold"], abs=1e-12)
    assert model.predict_proba(probe).tolist() == pytest.approx(expected["probabilities"], abs=1e-9)
    contributions = model.explain(probe)
    for row, want in zip(contributions.to_dict(orient="records"), expected["contributions"], strict=True):
        assert [row[n] for n in FEATURE_NAMES] == pytest.approx([want[n] for n in FEATURE_NAMES], abs=1e-9)


def test_the_web_api_serves_the_old_champion(legacy: Settings, expected: dict) -> None:
    with BackgroundServer(legacy) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/api/v1/health").json()["model_version"] == "1"
        for answers, probability in zip(expected["probe_rows"], expected["probabilities"], strict=True):
            response = client.post("/api/v1/predict", json=answers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_version"] == "1"
            assert body["probability"] == pytest.approx(probability, abs=1e-9)
            assert list(body["contributions"]) == list(FEATURE_NAMES)


def test_the_old_synthesizer_samples_as_before(legacy: Settings, expected: dict) -> None:
    loaded = load_synthesizer(legacy)
    assert loaded.version == "1"
    sample = loaded.synthesizer.sample(len(expected["sample"]), seed=expected["sample_seed"]).frame
    want = pd.DataFrame(expected["sample"])
    pd.testing.assert_frame_equal(sample.reset_index(drop=True), want[sample.columns], check_dtype=False,
                                  rtol=1e-6)


def test_the_old_synthesizer_loads_through_its_recorded_loader_module(legacy: Settings) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=legacy.tracking_uri, registry_uri=legacy.tracking_uri)
    source = client.get_model_version("heart-synthesizer", "1").source
    rows = mlflow.pyfunc.load_model(source).predict(pd.DataFrame({"rows": [12], "seed": [3]}))
    assert len(rows) == 12 and set(FEATURE_NAMES) <= set(rows.columns)


def test_the_daily_job_feeds_heart_from_the_old_synthesizer(legacy: Settings) -> None:
    result = run_daily(legacy, synthetic=20)
    assert (result.synthetic_rows, result.synthesizer_version) == (20, "1")
    heart = open_group(legacy, HEART)
    assert heart.count(sources=["synthetic"]) == 20


def test_synth_scrub_rewrites_the_old_synthesizer_without_its_rows_and_samples_as_before(
        legacy: Settings, expected: dict) -> None:
    """Issue 14, item 0: the old file holds CTGAN's row indices; `synth scrub` rewrites it (new checksum
    recorded), `status` stops naming it, sampling is unchanged, and a second scrub has nothing to do."""
    import torch
    from typer.testing import CliRunner

    from heartrisk.cli import app
    from heartrisk.synth.registry import synthesizer_status
    from heartrisk.synth.synthesizer import holds_training_rows

    weights = next(legacy.home.rglob("ctgan.pt"))
    assert holds_training_rows(torch.load(weights, weights_only=False, map_location="cpu"))
    assert "1" in synthesizer_status(legacy)["versions_holding_training_rows"]

    runner = CliRunner()
    result = runner.invoke(app, ["synth", "scrub"])
    assert result.exit_code == 0, result.output
    assert "rewrote version(s) 1" in result.output
    assert not holds_training_rows(torch.load(weights, weights_only=False, map_location="cpu"))
    assert "versions_holding_training_rows" not in synthesizer_status(legacy)
    loaded = load_synthesizer(legacy)  # the new checksum is the one recorded
    sample = loaded.synthesizer.sample(len(expected["sample"]), seed=expected["sample_seed"]).frame
    want = pd.DataFrame(expected["sample"])[sample.columns]
    pd.testing.assert_frame_equal(sample.reset_index(drop=True), want, check_dtype=False, rtol=1e-6)
    again = runner.invoke(app, ["synth", "scrub"])
    assert again.exit_code == 0 and "already free of training rows" in again.output
