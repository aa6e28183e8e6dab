"""The classifier: one imbalanced-learn pipeline per candidate, and the calibrated model we ship.

A pipeline is imputation (median for numbers, most frequent for answers: this is what lets a person
answer "Unknown"), encoding (numbers as they are, yes/no and ordered answers as one ordered code,
the other categories one-hot, so tree SHAP stays exact), an optional scaler, the imbalance treatment
and the classifier. :data:`CANDIDATES` holds each family's search space; :class:`RiskModel` wraps the
chosen, fitted pipeline with its calibration (none, Platt or isotonic, chosen per version:
:mod:`heartrisk.model.calibration`), decision threshold and training base rate, and is what the
registry stores and every consumer loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from lightgbm import LGBMClassifier
from scipy.stats import loguniform, randint, uniform
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from heartrisk.features import FEATURE_NAMES, FEATURES, NUMERIC_FEATURES
from heartrisk.model.calibration import Calibration, Platt, logit, sigmoid
from heartrisk.validation import coerce

__all__ = ["CANDIDATES", "FAMILIES", "TREATMENTS", "Platt", "RiskModel", "build_pipeline", "classifier",
           "classifier_margin", "encoder", "family_of", "logit", "model_input", "raw_margin", "sigmoid",
           "transform"]

#: Answers with a natural order (yes/no and ordinal): one ordered code each.
ORDERED_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind in ("binary", "ordinal"))
#: Unordered categories: one-hot (a binary category such as sex keeps one column).
NOMINAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "category")

FAMILIES: tuple[str, ...] = ("logreg", "random_forest", "hist_gb", "lightgbm")
TREATMENTS: tuple[str, ...] = ("none", "class_weight", "smote")


def _values(names: tuple[str, ...]) -> list[list[str]]:
    by_name = {f.name: f for f in FEATURES}
    return [list(by_name[n].values) for n in names]


def encoder() -> ColumnTransformer:
    """Imputation + encoding of the 17 answers, derived from the feature spec."""
    return ColumnTransformer(
        [
            ("number", SimpleImputer(strategy="median"), list(NUMERIC_FEATURES)),
            ("ordered", SkPipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("code", OrdinalEncoder(categories=_values(ORDERED_FEATURES))),
            ]), list(ORDERED_FEATURES)),
            ("nominal", SkPipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(categories=_values(NOMINAL_FEATURES), drop="if_binary",
                                         handle_unknown="ignore", sparse_output=False)),
            ]), list(NOMINAL_FEATURES)),
        ],
        verbose_feature_names_out=False,
    )


#: Trees of a random forest (not searched: the search varies depth, leaf size and samples).
FOREST_TREES = 120


def classifier(family: str, treatment: str, seed: int = 42, threads: int = 1) -> Any:
    """A fresh classifier of ``family``; ``class_weight`` weighs the rare class up, others do not."""
    weighted = treatment == "class_weight"
    if family == "logreg":
        return LogisticRegression(max_iter=2000, class_weight="balanced" if weighted else None)
    if family == "random_forest":
        return RandomForestClassifier(
            n_estimators=FOREST_TREES, n_jobs=threads, random_state=seed,
            class_weight="balanced_subsample" if weighted else None)
    if family == "hist_gb":
        return HistGradientBoostingClassifier(
            categorical_features=None, early_stopping=True, random_state=seed,
            class_weight="balanced" if weighted else None)
    if family == "lightgbm":
        return LGBMClassifier(
            n_jobs=threads, random_state=seed, verbose=-1, subsample_freq=1,
            class_weight="balanced" if weighted else None)
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def build_pipeline(family: str, treatment: str, seed: int = 42, threads: int = 1) -> Pipeline:
    """imputation -> encoding -> (scaling) -> imbalance treatment -> classifier."""
    if treatment not in TREATMENTS:
        raise ValueError(f"unknown imbalance treatment {treatment!r}; known: {', '.join(TREATMENTS)}")
    return Pipeline([
        ("encode", encoder()),
        ("scale", StandardScaler() if family == "logreg" else "passthrough"),
        ("resample", SMOTE(random_state=seed) if treatment == "smote" else "passthrough"),
        ("classify", classifier(family, treatment, seed, threads)),
    ])


#: Randomized-search spaces, per family (keys are pipeline parameters).
CANDIDATES: dict[str, dict[str, Any]] = {
    "logreg": {"classify__C": loguniform(1e-3, 10)},
    "random_forest": {
        "classify__max_depth": [8, 10, 12, 16],
        "classify__min_samples_leaf": [2, 5, 10, 20, 40],
        "classify__max_features": ["sqrt", 0.3, 0.5],
        "classify__max_samples": [0.3, 0.5, None],  # bootstrap share: fewer rows per tree, faster
    },
    "hist_gb": {
        "classify__learning_rate": loguniform(0.03, 0.2),
        "classify__max_leaf_nodes": randint(8, 48),
        "classify__min_samples_leaf": randint(20, 200),
        "classify__l2_regularization": loguniform(1e-3, 10),
        "classify__max_iter": [300],
    },
    "lightgbm": {
        "classify__n_estimators": randint(150, 500),
        "classify__learning_rate": loguniform(0.02, 0.1),
        "classify__num_leaves": randint(8, 48),
        "classify__min_child_samples": randint(20, 300),
        "classify__subsample": uniform(0.6, 0.4),
        "classify__colsample_bytree": uniform(0.5, 0.5),
        "classify__reg_lambda": loguniform(1e-3, 10),
    },
}


def serving_cost(family: str, params: dict[str, Any]) -> float:
    """Roughly how many tree nodes one prediction and its explanation walk with these parameters.

    The training search keeps, among the configurations whose CV score is as good as the best within
    its noise, the cheapest by this measure (:func:`heartrisk.model.training.one_standard_error`):
    TreeSHAP's cost grows with trees x leaves, and it is most of a request's CPU. Parameters the
    search does not set take the family's defaults here.
    """
    if family == "lightgbm":
        return float(params.get("classify__n_estimators", 100) * params.get("classify__num_leaves", 31))
    if family == "hist_gb":
        return float(params.get("classify__max_iter", 100) * params.get("classify__max_leaf_nodes", 31))
    if family == "random_forest":
        depth = params.get("classify__max_depth") or 32
        return float(FOREST_TREES * 2 ** min(depth, 32))
    return 1.0  # a linear model costs the same whatever its regularisation


def without_training_rows(pipeline: Pipeline) -> Pipeline:
    """The fitted pipeline with its resampling step unfitted again: a fitted SMOTE keeps a
    nearest-neighbour index of every positive training row (encoded), which would then be saved with
    the model. Resampling only happens while fitting (imbalanced-learn skips it when predicting), so
    predictions and explanations are unchanged. Returns the same pipeline object."""
    from sklearn.base import clone

    step = pipeline.named_steps["resample"]
    if not isinstance(step, str):
        pipeline.steps[[name for name, _ in pipeline.steps].index("resample")] = ("resample", clone(step))
    return pipeline


def model_input(X: pd.DataFrame, validate: bool = True) -> pd.DataFrame:
    """The 17 answers as the pipeline wants them: numbers float, answers str, Unknown = NaN.

    With ``validate`` every value is checked against the feature spec first (a
    :class:`~heartrisk.validation.ValidationError` names the bad row and column): a model must
    refuse an answer it has never seen rather than silently treat it as something else.
    """
    missing = [name for name in FEATURE_NAMES if name not in X.columns]
    if missing:
        raise KeyError(f"missing feature column(s): {', '.join(missing)}")
    frame = X.loc[:, list(FEATURE_NAMES)].reset_index(drop=True)
    if validate:
        frame = coerce(frame, naming="name", label="absent").raise_if_any("model input")
    out = {}
    for f in FEATURES:
        column = frame[f.name]
        if f.is_numeric:
            out[f.name] = pd.to_numeric(column, errors="coerce").astype(float)
        else:
            out[f.name] = column.astype(object).where(column.notna(), np.nan)
    return pd.DataFrame(out)


def classifier_margin(clf: Any, Xt: np.ndarray) -> np.ndarray:
    """A fitted classifier's score in log-odds (a forest's vote share is turned into log-odds)."""
    if isinstance(clf, RandomForestClassifier):
        return logit(clf.predict_proba(Xt)[:, 1])
    if isinstance(clf, LGBMClassifier):
        return clf.predict(Xt, raw_score=True)
    return clf.decision_function(Xt)


def transform(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Rows as the classifier of a fitted pipeline sees them (imputed, encoded, scaled)."""
    Xt = pipeline.named_steps["encode"].transform(X)
    scale = pipeline.named_steps["scale"]
    return Xt if isinstance(scale, str) else scale.transform(Xt)


def raw_margin(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """The fitted pipeline's uncalibrated log-odds for prepared rows (see :func:`model_input`)."""
    return classifier_margin(pipeline.named_steps["classify"], transform(pipeline, X))


def family_of(pipeline: Pipeline) -> str:
    clf = pipeline.named_steps["classify"]
    for family, kind in (("logreg", LogisticRegression), ("random_forest", RandomForestClassifier),
                         ("hist_gb", HistGradientBoostingClassifier), ("lightgbm", LGBMClassifier)):
        if isinstance(clf, kind):
            return family
    raise TypeError(f"unsupported classifier {type(clf).__name__}")


class RiskModel:
    """The shipped model: fitted pipeline + calibration + threshold + what it was trained on.

    ``predict_proba`` follows scikit-learn (two columns) so MLflow's sklearn flavour and any sklearn
    tool can use it; :meth:`risk` is the one-column calibrated probability of heart disease.
    """

    _estimator_type = "classifier"
    classes_ = np.array([0, 1])

    def __init__(self, pipeline: Pipeline, calibration: Calibration, threshold: float, base_rate: float,
                 background: np.ndarray | None = None, info: Mapping[str, Any] | None = None) -> None:
        self.pipeline = pipeline
        self.calibrator = calibration
        self.threshold = float(threshold)
        self.base_rate = float(base_rate)
        #: Mean encoded row of the training data: the reference point of linear explanations.
        self.background = background
        self.info = dict(info or {})
        #: Aggregates of the survey (issue 17, :mod:`heartrisk.model.reference`) and the model card
        #: (:mod:`heartrisk.model.card`), set by the training job; plain JSON-ready data.
        self.reference: dict[str, Any] | None = None
        self.card: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Caches (``_``-prefixed, e.g. a SHAP explainer) are rebuilt after loading, not stored."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def calibration(self) -> Calibration:
        """The chosen calibration; models registered before the choice existed stored a Platt
        calibration as ``slope`` and ``intercept``."""
        chosen = self.__dict__.get("calibrator")
        return chosen if chosen is not None else Platt(self.slope, self.intercept)

    @property
    def family(self) -> str:
        return family_of(self.pipeline)

    def log_odds(self, X: pd.DataFrame, validate: bool = True) -> np.ndarray:
        """Calibrated log-odds of heart disease for each row."""
        return self.calibration(raw_margin(self.pipeline, model_input(X, validate)))

    def risk(self, X: pd.DataFrame, validate: bool = True) -> np.ndarray:
        """Calibrated P(heart disease) per row; Unknown (None/NaN) answers are imputed."""
        return sigmoid(self.log_odds(X, validate))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.risk(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.risk(X) >= self.threshold

    def imputation(self) -> dict[str, object]:
        """The value used for each feature when it is Unknown (median or most frequent answer)."""
        columns = self.pipeline.named_steps["encode"].named_transformers_
        values: dict[str, object] = {}
        numbers = columns["number"]
        values.update({n: float(v) for n, v in zip(NUMERIC_FEATURES, numbers.statistics_, strict=True)})
        for part, names in (("ordered", ORDERED_FEATURES), ("nominal", NOMINAL_FEATURES)):
            stats = columns[part].named_steps["impute"].statistics_
            values.update({n: str(v) for n, v in zip(names, stats, strict=True)})
        return {name: values[name] for name in FEATURE_NAMES}

    def encoded(self, X: pd.DataFrame, validate: bool = True) -> np.ndarray:
        """Rows as the classifier sees them (imputed, encoded, scaled)."""
        return transform(self.pipeline, model_input(X, validate))

    def encoded_features(self) -> list[str]:
        """For each encoded column, the question (feature) it came from."""
        encode = self.pipeline.named_steps["encode"]
        names = list(encode.get_feature_names_out())
        owner = []
        for name in names:
            if name in FEATURE_NAMES:
                owner.append(name)
            else:
                owner.append(next(n for n in NOMINAL_FEATURES if name.startswith(n + "_")))
        return owner
