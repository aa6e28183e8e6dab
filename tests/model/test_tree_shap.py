"""The compiled TreeSHAP (model/tree_shap.py) equals LightGBM's own pred_contrib and predict, and the
explanations built on it add up to the risk a person is shown, whichever calibration was chosen."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.model.calibration import Isotonic, Platt, Uncalibrated
from heartrisk.model.estimator import RiskModel, build_pipeline, logit, model_input, raw_margin, transform
from heartrisk.model.explain import compiled_trees, explain
from heartrisk.model.tree_shap import compile_lightgbm, decision_tables, near_rows
from heartrisk.sources.kaggle import read_kaggle_csv


def messy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaNs and exact zeros (LightGBM's two missing-value rules) and a label they drive."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 1] = rng.integers(0, 4, n)
    X[rng.random((n, 6)) < 0.1] = np.nan
    X[rng.random((n, 6)) < 0.1] = 0.0
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) - np.isnan(X[:, 3])
    return X, (signal + rng.normal(size=n) > 0.5).astype(int)


@pytest.mark.parametrize(("leaves", "zero_as_missing"), [(8, False), (63, False), (31, True)])
def test_compiled_trees_equal_lightgbms_own_values(leaves: int, zero_as_missing: bool) -> None:
    """Shallow and deep (leaf-wise, many repeated features on a path) trees give LightGBM's margins
    and TreeSHAP values, including for NaN and zero inputs."""
    X, y = messy(3000, seed=leaves)
    clf = LGBMClassifier(n_estimators=60, num_leaves=leaves, min_child_samples=5, verbose=-1,
                         zero_as_missing=zero_as_missing, random_state=1).fit(X, y)
    booster = clf.booster_
    trees = compile_lightgbm(booster)
    rows, _ = messy(500, seed=99)
    expected = booster.predict(rows, pred_contrib=True)
    values, base = trees.contributions(rows)
    np.testing.assert_allclose(values, expected[:, :-1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(base, expected[:, -1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(trees.margin(rows), booster.predict(rows, raw_score=True), rtol=0, atol=1e-10)
    one, _ = trees.contributions(rows[7])  # one row, as a request sends it
    np.testing.assert_allclose(one[0], expected[7, :-1], rtol=0, atol=1e-10)
    near = near_rows(rows, np.random.default_rng(3))  # a person's context rows, NaNs and zeros too
    np.testing.assert_allclose(trees.margin_near(near), booster.predict(near, raw_score=True), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(trees.margin_near(rows), booster.predict(rows, raw_score=True), rtol=0,
                               atol=1e-10)  # and rows that share nothing
    if leaves == 63:
        assert trees.max_depth > 10 and trees.rules.max() >= 3  # deep paths, several quadrature nodes


def test_boosters_it_does_not_cover_are_refused() -> None:
    X, y = messy(600, seed=1)
    categorical = LGBMClassifier(n_estimators=5, verbose=-1, min_child_samples=5).fit(
        np.nan_to_num(np.abs(X)).round(), y, categorical_feature=[1])
    with pytest.raises(ValueError, match="categorical"):
        compile_lightgbm(categorical.booster_)
    three = LGBMClassifier(n_estimators=5, verbose=-1).fit(X, (y + (X[:, 0] > 1)).astype(int))
    with pytest.raises(ValueError, match="binary"):
        compile_lightgbm(three.booster_)


@pytest.fixture(scope="module")
def lightgbm_model(sample_csv: Path) -> tuple[RiskModel, pd.DataFrame, pd.DataFrame, np.ndarray]:
    frame = read_kaggle_csv(sample_csv).frame
    X, y = frame[list(FEATURE_NAMES)], frame[LABEL.name].astype(int).to_numpy()
    pipeline = build_pipeline("lightgbm", "none", threads=1)
    pipeline.set_params(classify__n_estimators=150, classify__num_leaves=40)
    prepared = model_input(X, validate=False)
    pipeline.fit(prepared.iloc[:4000], y[:4000])
    model = RiskModel(pipeline, Platt.fit(raw_margin(pipeline, prepared.iloc[4000:]), y[4000:]), 0.2,
                      float(y.mean()))
    rows = X.iloc[4000:4200].copy()
    rows.iloc[::4, [0, 3, 11]] = None  # Unknowns, explained at their imputed values
    return model, rows, prepared.iloc[4000:], y[4000:]


def test_explanations_equal_the_boosters_treeshap_grouped_by_question(lightgbm_model: tuple) -> None:
    model, rows, _, _ = lightgbm_model
    assert compiled_trees(model) is not None
    contributions, base = explain(model, rows)
    native = model.pipeline.named_steps["classify"].booster_.predict(
        transform(model.pipeline, model_input(rows)), pred_contrib=True)
    owners = np.array(model.encoded_features())
    grouped = np.column_stack([native[:, :-1][:, owners == name].sum(axis=1) for name in FEATURE_NAMES])
    np.testing.assert_allclose(contributions.to_numpy(), grouped * model.calibration.slope, rtol=0, atol=1e-9)
    assert base == pytest.approx(model.calibration(np.array([native[0, -1]]))[0], abs=1e-12)


@pytest.mark.parametrize("method", ["none", "platt", "isotonic"])
def test_explanations_add_up_to_the_shown_risk_whatever_the_calibration(lightgbm_model: tuple,
                                                                        method: str) -> None:
    model, rows, held, y_held = lightgbm_model
    margin = raw_margin(model.pipeline, held)
    fitted = {"none": Uncalibrated, "platt": Platt, "isotonic": Isotonic}[method].fit(margin, y_held)
    calibrated = RiskModel(model.pipeline, fitted, 0.2, model.base_rate)
    contributions, base = explain(calibrated, rows)
    np.testing.assert_allclose(base + contributions.sum(axis=1).to_numpy(), logit(calibrated.risk(rows)),
                               rtol=0, atol=1e-8)
    if method != "isotonic":  # an affine map keeps each answer's share: the raw values times the slope
        raw, _raw_base = explain(RiskModel(model.pipeline, Uncalibrated(), 0.2, model.base_rate), rows)
        np.testing.assert_allclose(contributions.to_numpy(), raw.to_numpy() * fitted.slope, atol=1e-9)


@pytest.mark.parametrize("budget", [None, 3000])
def test_small_trees_are_looked_up_and_agree_with_linear_treeshap(budget: int | None) -> None:
    """Trees of at most TABLE_SPLITS splits are explained from their decision tables; all of them
    (budget None) or as many as fit (the rest by Linear TreeSHAP), with LightGBM's values either way."""
    X, y = messy(3000, seed=5)
    booster = LGBMClassifier(n_estimators=40, num_leaves=10, min_child_samples=5, verbose=-1,
                             random_state=2).fit(X, y).booster_
    trees = compile_lightgbm(booster)
    if budget is not None:
        trees = replace(trees, tables=decision_tables(trees, budget=budget))
    splitting = int(np.sum([trees.left[root] >= 0 for root in trees.roots]))
    tabled = trees.tables.trees
    assert (tabled == splitting) if budget is None else (0 < tabled < splitting)
    rows, _ = messy(400, seed=6)
    expected = booster.predict(rows, pred_contrib=True)[:, :-1]
    np.testing.assert_allclose(trees.contributions(rows)[0], expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(trees.without_tables().contributions(rows)[0], expected, rtol=0, atol=1e-10)
    assert trees.without_tables().tables.trees == 0


def test_the_first_rows_explanation_comes_with_the_near_margins() -> None:
    """margin_near_explained gives margin_near's margins and the first row's LightGBM values, from
    the tables when every tree has one and by Linear TreeSHAP when some do not."""
    X, y = messy(3000, seed=8)
    booster = LGBMClassifier(n_estimators=30, num_leaves=8, min_child_samples=5, verbose=-1,
                             random_state=4).fit(X, y).booster_
    complete = compile_lightgbm(booster)
    partial = replace(complete, tables=decision_tables(complete, budget=2000))
    assert complete.tables.complete and not partial.tables.complete
    rows, _ = messy(40, seed=9)
    near = near_rows(rows, np.random.default_rng(1))
    expected = booster.predict(near[:1], pred_contrib=True)[0]
    for trees in (complete, partial):
        margins, values, base = trees.margin_near_explained(near)
        np.testing.assert_allclose(margins, booster.predict(near, raw_score=True), rtol=0, atol=1e-10)
        np.testing.assert_allclose(values, expected[:-1], rtol=0, atol=1e-10)
        assert base == pytest.approx(expected[-1], abs=1e-10)
