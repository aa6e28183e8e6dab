"""Model code: input preparation, encoding groups, calibration, SHAP additivity, metrics, the gate's
bootstrap. Small fits on the 6,000-row sample; no registry here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.model.estimator import (
    FAMILIES,
    TREATMENTS,
    Platt,
    RiskModel,
    build_pipeline,
    logit,
    model_input,
    raw_margin,
    transform,
)
from heartrisk.model.evaluation import average_precision, best_f1_threshold, compare, recall_threshold, scores
from heartrisk.model.explain import explain
from heartrisk.sources.kaggle import read_kaggle_csv
from heartrisk.validation import ValidationError


@pytest.fixture(scope="module")
def sample(sample_csv: Path) -> tuple[pd.DataFrame, np.ndarray]:
    frame = read_kaggle_csv(sample_csv).frame
    return frame[list(FEATURE_NAMES)], frame[LABEL.name].astype(int).to_numpy()


def fitted(family: str, treatment: str, X: pd.DataFrame, y: np.ndarray) -> RiskModel:
    """A small model of ``family`` fitted and Platt-calibrated on the first / second half."""
    pipeline = build_pipeline(family, treatment, threads=1)
    if family in ("random_forest", "lightgbm"):
        pipeline.set_params(classify__n_estimators=40)
    half = len(y) // 2
    prepared = model_input(X, validate=False)
    pipeline.fit(prepared.iloc[:half], y[:half])
    calibration = Platt.fit(raw_margin(pipeline, prepared.iloc[half:]), y[half:])
    background = transform(pipeline, prepared.iloc[:half]).mean(axis=0) if family == "logreg" else None
    return RiskModel(pipeline, calibration, 0.2, float(y.mean()), background)


def test_model_input_keeps_unknowns_and_refuses_bad_values() -> None:
    row = dict.fromkeys(FEATURE_NAMES)
    row.update(bmi=31.5, smoking="Yes", age_category="80 or older")
    prepared = model_input(pd.DataFrame([row]))
    assert prepared["bmi"].iloc[0] == 31.5
    assert np.isnan(prepared["sleep_time"].iloc[0])
    assert pd.isna(prepared["race"].iloc[0])
    with pytest.raises(ValidationError, match="age_category"):
        model_input(pd.DataFrame([{**row, "age_category": "90+"}]))
    with pytest.raises(KeyError, match="stroke"):
        model_input(pd.DataFrame([row]).drop(columns="stroke"))


def test_every_encoded_column_belongs_to_one_question(sample: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = sample
    model = fitted("logreg", "none", X.iloc[:1000], y[:1000])
    owners = model.encoded_features()
    assert len(owners) == model.encoded(X.iloc[:3]).shape[1]
    assert set(owners) == set(FEATURE_NAMES)
    assert owners.count("race") == 6 and owners.count("sex") == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_explanations_add_up_to_the_calibrated_log_odds(
        family: str, sample: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = sample
    model = fitted(family, "none", X.iloc[:3000], y[:3000])
    rows = X.iloc[3000:3040].copy()
    rows.iloc[::3, [0, 1, 8]] = None  # some Unknowns: explained at their imputed values
    contributions, base = explain(model, rows)
    assert list(contributions.columns) == list(FEATURE_NAMES)
    np.testing.assert_allclose(base + contributions.sum(axis=1).to_numpy(),
                               logit(model.risk(rows)), atol=1e-4)


def test_unknown_answers_are_imputed_from_the_training_data(
        sample: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = sample
    model = fitted("lightgbm", "none", X, y)
    values = model.imputation()
    assert values["bmi"] == pytest.approx(float(X["bmi"].iloc[: len(y) // 2].median()))
    assert values["smoking"] == X["smoking"].iloc[: len(y) // 2].mode()[0]
    everything_unknown = pd.DataFrame([dict.fromkeys(FEATURE_NAMES)])
    imputed_row = pd.DataFrame([values])
    assert model.risk(everything_unknown)[0] == pytest.approx(model.risk(imputed_row)[0])


@pytest.mark.parametrize("treatment", TREATMENTS)
def test_platt_calibration_matches_the_real_rate(
        treatment: str, sample: tuple[pd.DataFrame, np.ndarray]) -> None:
    """Class weights and SMOTE inflate raw scores; the calibrated mean comes back near the rate."""
    X, y = sample
    model = fitted("logreg", treatment, X, y)
    held = slice(len(y) // 2, None)
    assert model.risk(X.iloc[held]).mean() == pytest.approx(y[held].mean(), abs=0.01)


def test_weighted_average_precision_is_sklearns() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.1
    p = np.round(rng.random(3000) * 0.5 + y * rng.random(3000) * 0.5, 2)  # ties on purpose
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p))
    counts = rng.integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), counts)
    assert average_precision(y, p, counts) == pytest.approx(
        average_precision_score(y[repeated], p[repeated]))


def test_thresholds_and_scores() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.1).astype(int)
    p = np.clip(0.08 + 0.3 * y + rng.normal(0, 0.1, len(y)), 0, 1)
    best = best_f1_threshold(y, p)
    assert scores(y, p, best)["f1"] >= max(scores(y, p, t)["f1"] for t in (0.1, 0.2, 0.3, 0.4))
    screening = recall_threshold(y, p, 0.9)
    assert scores(y, p, screening)["recall"] >= 0.9
    assert screening <= best


def test_bootstrap_gate_separates_a_better_model_from_noise() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(4000) < 0.1).astype(int)
    signal = y + rng.normal(0, 1.0, len(y))
    weak = y + rng.normal(0, 2.5, len(y))
    assert compare(y, weak, signal, resamples=100).significant
    assert not compare(y, signal, weak, resamples=100).significant
    same = compare(y, signal, signal + rng.normal(0, 1e-6, len(y)), resamples=100)
    assert not same.significant and same.noise < 0.01


def test_the_search_keeps_the_cheapest_configuration_within_one_standard_error_of_the_best() -> None:
    from heartrisk.model.training import one_standard_error

    def config(trees: int, leaves: int) -> dict[str, int]:
        return {"classify__n_estimators": trees, "classify__num_leaves": leaves}

    results = pd.DataFrame({
        "params": [config(400, 40), config(200, 10), config(150, 8), config(300, 20), config(100, 8)],
        "mean_test_pr_auc": [0.340, 0.338, 0.320, 0.339, 0.335],
        "std_test_pr_auc": [0.006, 0.005, 0.004, 0.006, 0.005],
    })
    # 3 folds: one standard error of the best is 0.006 / sqrt(3) = 0.0035 -> scores >= 0.3365 count.
    # 100 x 8 (0.335) is within one standard deviation but not one standard error; 150 x 8 neither.
    assert one_standard_error(results, "lightgbm", folds=3) == 1  # 200 x 10: 2,000 nodes
    assert one_standard_error(results.assign(std_test_pr_auc=0.0), "lightgbm", folds=3) == 0
    assert one_standard_error(results.assign(std_test_pr_auc=float("nan")), "lightgbm", folds=3) == 0
    # A linear model costs the same whatever C: the best score is kept.
    assert one_standard_error(results.assign(params=[{"classify__C": c} for c in (1, 2, 3, 4, 5)]),
                              "logreg", folds=3) == 0
