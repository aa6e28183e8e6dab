"""SHAP explanations of a :class:`~heartrisk.model.estimator.RiskModel`, grouped back to the 17 questions.

The interface, for every consumer (the web scorer, batch jobs, the training report):

- :func:`explain` ``(model, X) -> (contributions, base_value)``: a frame of one row per row of ``X`` and
  one column per question, and the base value;
- :func:`raw_contributions` ``(model, Xt)``: the same before grouping and calibration, for rows already
  encoded (the scorer encodes rows itself); :func:`reference_contributions` is the family's reference
  implementation the fast paths are checked against;
- :func:`calibrated` ``(model, values, base)`` turns raw per-column contributions into per-question
  calibrated ones.

Units: **log-odds of the calibrated probability**. For every row
``base_value + contributions.sum() == logit(probability)`` (up to float error), so a person's risk is
the base risk moved by each answer, whichever calibration the version chose (one factor per row:
:meth:`heartrisk.model.calibration.Platt.scale`). Exact for the families we ship most:

- LightGBM: path-dependent TreeSHAP, the values of the booster's own ``pred_contrib``, computed by
  :mod:`heartrisk.model.tree_shap` (compiled once per model and checked against ``pred_contrib``; about
  20 times faster a row on a full champion; LightGBM's own is the fallback);
- HistGradientBoosting on one-hot/ordered columns: ``shap.TreeExplainer`` (exact on numeric splits;
  DESIGN.md: native categorical splits would not be);
- logistic regression: ``coef * (x - mean x)``, exact for a linear model with independent features;
- random forest: TreeSHAP in probability units, moved to log-odds with one factor per row (the secant
  slope of the logit between the base and the row's probability), so it still adds up exactly.

Encoded columns (one-hot race, say) are summed back to the question they came from; a question the
person left Unknown is explained at its imputed value.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from heartrisk.features import FEATURE_NAMES
from heartrisk.model.estimator import RiskModel, classifier_margin, logit, model_input, transform
from heartrisk.model.tree_shap import CompiledTrees, compile_lightgbm

log = logging.getLogger(__name__)


def raw_contributions(model: RiskModel, Xt: np.ndarray) -> tuple[np.ndarray, float]:
    """Per encoded column SHAP values in the classifier's raw log-odds, and the base value (fastest
    exact path)."""
    trees = compiled_trees(model)
    if trees is not None:
        return trees.contributions(Xt)
    return reference_contributions(model, Xt)


def compiled_trees(model: RiskModel) -> CompiledTrees | None:
    """The model's LightGBM booster compiled for fast TreeSHAP (once per model object, checked against
    the booster); None for other families or a booster it does not cover."""
    if "_compiled_trees" not in model.__dict__:
        clf = model.pipeline.named_steps["classify"]
        trees = None
        if isinstance(clf, LGBMClassifier):
            try:
                trees = compile_lightgbm(clf.booster_)
            except ValueError as exc:  # not covered, or not equal to LightGBM: use LightGBM's own
                log.warning("explaining with LightGBM's own pred_contrib: %s", exc)
        model.__dict__["_compiled_trees"] = trees
    return model.__dict__["_compiled_trees"]


def reference_contributions(model: RiskModel, Xt: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`raw_contributions` by each family's reference implementation (LightGBM's own
    ``pred_contrib``, shap's TreeExplainer, the linear formula)."""
    clf = model.pipeline.named_steps["classify"]
    if isinstance(clf, LGBMClassifier):
        contrib = clf.booster_.predict(Xt, pred_contrib=True)
        return contrib[:, :-1], float(contrib[0, -1])
    if isinstance(clf, LogisticRegression):
        background = model.background if model.background is not None else np.zeros(Xt.shape[1])
        coef = clf.coef_[0]
        return coef * (Xt - background), float(clf.intercept_[0] + coef @ background)
    if isinstance(clf, HistGradientBoostingClassifier):
        values, base = _tree_shap(model, clf, Xt)
        return values, base
    if isinstance(clf, RandomForestClassifier):
        values, base_p = _tree_shap(model, clf, Xt)
        p = np.clip(base_p + values.sum(axis=1), 1e-6, 1 - 1e-6)
        base_margin = float(logit(np.array([base_p]))[0])
        margin = classifier_margin(clf, Xt)
        gap = p - base_p
        slope = np.where(np.abs(gap) > 1e-9, (margin - base_margin) / np.where(gap == 0, 1, gap),
                         1.0 / (base_p * (1 - base_p)))
        return values * slope[:, None], base_margin
    raise TypeError(f"no explainer for {type(clf).__name__}")


def _tree_shap(model: RiskModel, clf: Any, Xt: np.ndarray) -> tuple[np.ndarray, float]:
    """shap.TreeExplainer, built once per model object (it is not stored with the model)."""
    explainer = getattr(model, "_tree_explainer", None)
    if explainer is None:
        import shap

        explainer = shap.TreeExplainer(clf)
        model.__dict__["_tree_explainer"] = explainer
    values = explainer.shap_values(Xt, check_additivity=False)
    base = np.ravel(explainer.expected_value)
    if isinstance(values, list):  # older shap: one array per class
        values, base = values[1], base[1:]
    values = np.asarray(values)
    if values.ndim == 3:  # (rows, columns, classes)
        values, base = values[:, :, 1], base[1:]
    return values, float(base[-1])


def explain(model: RiskModel, X: pd.DataFrame, validate: bool = True) -> tuple[pd.DataFrame, float]:
    """SHAP contributions per row and question (calibrated log-odds) and the base value.

    Returns ``(contributions, base_value)``: ``contributions`` has one row per row of ``X`` (same
    index) and one column per feature in :data:`~heartrisk.features.FEATURE_NAMES`.
    """
    Xt = transform(model.pipeline, model_input(X, validate))
    values, base = raw_contributions(model, Xt)
    grouped, calibrated_base = calibrated(model, values, base)
    return pd.DataFrame(grouped, columns=list(FEATURE_NAMES), index=X.index), calibrated_base


def question_columns(model: RiskModel) -> np.ndarray:
    """Encoded column x question (FEATURE_NAMES order): 1 where the column encodes the question.
    Grouping is then one matrix product (a column belongs to one question; adding zeros is exact)."""
    if "_question_columns" not in model.__dict__:
        owners = np.array(model.encoded_features())
        model.__dict__["_question_columns"] = np.column_stack(
            [(owners == name).astype(float) for name in FEATURE_NAMES])
    return model.__dict__["_question_columns"]


def calibrated(model: RiskModel, values: np.ndarray, base: float) -> tuple[np.ndarray, float]:
    """Raw per-column contributions -> per-question contributions in calibrated log-odds, and the
    calibrated base value. The raw ones add up to the raw margin, so each row's factor
    (:meth:`~heartrisk.model.calibration.Platt.scale`) makes them add up to the calibrated one."""
    calibration = model.calibration
    grouped = values @ question_columns(model)
    factor = calibration.scale(base + values.sum(axis=1), base)
    return grouped * factor[:, None], float(calibration(np.array([base]))[0])


def base_value(model: RiskModel) -> float:
    """The explainer's base value (calibrated log-odds) without explaining a row."""
    cached = getattr(model, "_base_value", None)
    if cached is None:
        one = pd.DataFrame([dict.fromkeys(FEATURE_NAMES)])
        cached = explain(model, one)[1]
        model.__dict__["_base_value"] = cached
    return cached


def mean_abs(contributions: pd.DataFrame) -> pd.Series:
    """Global importance: mean |contribution| per question, largest first."""
    return contributions.abs().mean().sort_values(ascending=False)
