"""The registry as consumers use it: champion lookup, loading in a fresh process, operator commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, NUMERIC_FEATURES
from heartrisk.model import registry
from heartrisk.model.estimator import logit

UNKNOWNS_ROW = {
    "bmi": None, "smoking": "Yes", "alcohol_drinking": None, "stroke": "No", "physical_health": None,
    "mental_health": 2, "diff_walking": "No", "sex": "Male", "age_category": "65-69", "race": None,
    "diabetic": "No", "physical_activity": None, "gen_health": "Fair", "sleep_time": 6,
    "asthma": "No", "kidney_disease": None, "skin_cancer": "No",
}


def test_empty_home_has_no_champion_and_asking_creates_nothing(settings: Settings) -> None:
    assert registry.champion_version(settings) is None
    assert registry.versions(settings) == []
    with pytest.raises(registry.NoModelError, match="heartrisk train"):
        registry.champion_model(settings)
    assert not (settings.home / "mlflow.db").exists()
    assert registry.registry_status(settings)["exists"] is False


def test_champion_loads_with_its_threshold_metrics_and_lineage(trained_home: Settings) -> None:
    model = registry.champion_model(trained_home)
    assert model.version == registry.champion_version(trained_home) == "1"
    assert 0 < model.threshold < 1
    assert model.base_rate == pytest.approx(0.0855, abs=0.01)
    assert model.feature_group == "heart_v1" and model.feature_group_version == 1
    assert {"roc_auc", "pr_auc", "brier", "f1", "precision", "recall"} <= set(model.metrics)
    assert model.metrics["roc_auc"] > 0.75
    assert registry.load_model(trained_home, "1") is model  # cached per process


def test_unknowns_are_scored_imputed_and_explained(trained_home: Settings) -> None:
    model = registry.champion_model(trained_home)
    X = pd.DataFrame([UNKNOWNS_ROW, dict.fromkeys(FEATURE_NAMES)])
    p = model.predict_proba(X)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    assert list(model.predict(X)) == list(p >= model.threshold)
    imputed = model.imputed(X)
    assert set(imputed[0]) == {k for k, v in UNKNOWNS_ROW.items() if v is None}
    assert len(imputed[1]) == len(FEATURE_NAMES)
    contributions = model.explain(X)
    assert list(contributions.columns) == list(FEATURE_NAMES)
    np.testing.assert_allclose(model.base_value + contributions.sum(axis=1), logit(p), atol=1e-4)


def test_a_fresh_process_loads_the_champion_alias_from_mlflow(trained_home: Settings) -> None:
    """Outside our registry module: plain MLflow, `models:/heart-risk-classifier@champion`."""
    script = textwrap.dedent(f"""
        import json, sys
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({trained_home.tracking_uri!r})
        row = pd.DataFrame([json.loads(sys.argv[1])])
        numbers = json.loads(sys.argv[2])
        row[numbers] = row[numbers].astype(float)  # the signature says double: ints are refused
        model = mlflow.sklearn.load_model("models:/heart-risk-classifier@champion")
        pyfunc = mlflow.pyfunc.load_model("models:/heart-risk-classifier@champion")
        print(json.dumps({{"risk": float(model.risk(row)[0]),
                          "pyfunc": float(pyfunc.predict(row)[0][1]),
                          "threshold": model.threshold}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HEARTRISK_"))}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(UNKNOWNS_ROW),
                           json.dumps(list(NUMERIC_FEATURES))], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    here = registry.champion_model(trained_home)
    expected = here.predict_proba(pd.DataFrame([UNKNOWNS_ROW]))[0]
    assert answer["risk"] == pytest.approx(expected)
    assert answer["pyfunc"] == pytest.approx(expected)
    assert answer["threshold"] == pytest.approx(here.threshold)


def test_model_list_promote_and_rollback_from_the_command_line(trained: Settings) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["model", "list"])
    assert listed.exit_code == 0, listed.output
    assert "champion: version 1 (" in listed.output and "promoted: there was no champion" in listed.output
    refused = runner.invoke(app, ["model", "promote", "9"])
    assert refused.exit_code == 2 and "no version '9'" in refused.output
    nothing = runner.invoke(app, ["model", "rollback"])
    assert nothing.exit_code == 2 and "nothing to roll back to" in nothing.output
    status = registry.registry_status(trained)
    assert status["champion"] == "1" and status["champion_test"]["pr_auc"] > 0.2
