"""No training row in the classifier's artifacts: the registered input examples are made up, and a fitted
SMOTE step keeps no neighbour index of the positive rows."""

from __future__ import annotations

import json
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.model.estimator import transform
from heartrisk.model.registry import MODEL_NAME, _model_location, example_answers
from heartrisk.model.training import Candidate, TrainSettings, fit_candidate, prepare
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.view import FeatureView
from heartrisk.tracking import client as registry_client
from support.attacks import rows_found_in


def model_folder(settings: Settings, version: str = "1") -> Path:
    mlflow_client = registry_client(settings)
    location = _model_location(mlflow_client, mlflow_client.get_model_version(MODEL_NAME, version))
    return Path(location.removeprefix("file://"))


def example_rows(folder: Path) -> pd.DataFrame:
    saved = json.loads((folder / "input_example.json").read_text())
    return pd.DataFrame(saved["data"], columns=saved["columns"])


def test_the_logged_input_examples_are_nobody_s_answers(trained_home: Settings) -> None:
    folder = model_folder(trained_home)
    heart = open_group(trained_home, HEART).read(columns=list(FEATURE_NAMES))
    known = set(heart.astype(object).where(heart.notna(), None).itertuples(index=False, name=None))
    for name in ("input_example.json", "serving_input_example.json"):
        saved = json.loads((folder / name).read_text())
        block = saved.get("dataframe_split", saved)
        rows = pd.DataFrame(block["data"], columns=block["columns"])[list(FEATURE_NAMES)]
        answers = rows.astype(object).where(rows.notna(), None)
        found = [row for row in answers.itertuples(index=False, name=None) if row in known]
        assert found == [], f"{name} holds {len(found)} row(s) of heart"
    pd.testing.assert_frame_equal(example_rows(folder), example_answers(), check_dtype=False)


@pytest.mark.parametrize("family", ["logreg", "lightgbm"])
def test_a_smote_model_keeps_no_positive_training_row(ingested: Settings, family: str) -> None:
    """The attack: search every 2-D array of the pickled model for the encoded training rows. Before the
    fix, SMOTE's neighbour index held every positive row of the fit."""
    ts = TrainSettings.for_quick(families=(family,), treatments=("smote",))
    data = prepare(FeatureView(open_group(ingested, HEART)).train_test_split(seed=ts.seed), ts)
    candidate = Candidate(family, "smote", {}, 0.0, 0.0, 0.0, 0.0, 0.0)
    model = cloudpickle.loads(cloudpickle.dumps(fit_candidate(candidate, data, ts)))  # what is stored
    encoded = transform(model.pipeline, data.X_fit)
    positives = encoded[data.y_fit == 1]
    assert len(positives) > 50
    assert rows_found_in(model, positives) == []
    # and the attack can tell: the same search finds them in a fitted SMOTE's own index
    fitted_smote = model.pipeline.named_steps["resample"].fit_resample(encoded, data.y_fit) and \
        model.pipeline.named_steps["resample"]
    assert rows_found_in(fitted_smote, positives)
    assert np.isfinite(model.risk(data.X_test.head(20), validate=False)).all()


def test_the_registered_classifier_gives_back_no_training_or_calibration_row(trained_home: Settings) -> None:
    """The attack on the stored model as anyone with the artifact store could run it: load the registered
    file and search every 2-D array for the encoded rows it was fitted on (``X_fit``) and calibrated and
    thresholded on (``X_holdout``). The linear explanation's reference point is a mean, the calibration
    two numbers, the SHAP explainer is rebuilt at load: none of them is a row."""
    from heartrisk.model.registry import load_model

    loaded = load_model(trained_home, "1")
    ts = TrainSettings.for_quick()
    data = prepare(FeatureView(open_group(trained_home, HEART)).train_test_split(seed=ts.seed), ts)
    model = loaded.model
    for name, rows in (("fit", data.X_fit), ("calibration", data.X_holdout)):
        encoded = transform(model.pipeline, rows)
        assert len(encoded) > 100
        assert rows_found_in(model, encoded) == [], f"{name} rows found in the registered model"
    background = getattr(model, "background", None)
    if background is not None:
        assert np.ndim(background) == 1  # one reference point, not a sample of people
    # and the search can tell: a model that kept a few calibration rows would be caught
    kept = {"model": model, "kept": transform(model.pipeline, data.X_holdout.head(5))}
    assert rows_found_in(kept, transform(model.pipeline, data.X_holdout))
