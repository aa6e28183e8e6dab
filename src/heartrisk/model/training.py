"""Choosing and fitting a classifier: the settings of a run, the data prepared for it, the search.

1. The split's training side is prepared (:func:`prepare`): synthetic rows capped at a share of the real
   ones, a stratified slice of the *real* training records held out for model choice, calibration and
   the threshold, so the test side is touched once, at the end.
2. Each (family, imbalance treatment) pair gets a randomized search over stratified k-fold CV on a
   sample of the training side, scored by average precision (:func:`search`); each family's best is
   refitted on the whole training side (:func:`fit_candidate`) and the family with the best held-out
   PR-AUC wins.
3. The calibration (none, Platt or isotonic: the lowest out-of-fold Brier score,
   :func:`heartrisk.model.calibration.choose`) and the threshold (best F1, or a target recall) come
   from the held-out slice.

The training job (:mod:`heartrisk.jobs.train`) reads the split, runs these steps, judges the winner at
the gate (:mod:`heartrisk.model.gate`) and registers it (:mod:`heartrisk.model.registry`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, train_test_split

from heartrisk.errors import UserError
from heartrisk.model import calibration
from heartrisk.model.estimator import (
    CANDIDATES,
    FAMILIES,
    TREATMENTS,
    RiskModel,
    build_pipeline,
    model_input,
    raw_margin,
    serving_cost,
    sigmoid,
    transform,
    without_training_rows,
)
from heartrisk.model.evaluation import (
    MIN_POSITIVES,
    average_precision,
    best_f1_threshold,
    recall_threshold,
)
from heartrisk.store.groups import REAL_SOURCES
from heartrisk.store.view import Split

EXPERIMENT = "training"


class TrainError(UserError, RuntimeError):
    """Training cannot start or finish on this data; the message says why and what to do."""


class TrainSettings(BaseModel):
    """Knobs of one training run (defaults: the full run; :meth:`quick` for tests and smoke runs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quick: bool = False
    include_synthetic: bool = Field(True, description="train on synthetic rows too, when present")
    max_synthetic_share: float = Field(
        0.1, ge=0, description="most synthetic rows per real training row; beyond it a seeded sample "
        "is used (bench/synthetic_value.py: +36,500 rows did not change PR-AUC, +100,000 lowered it)")
    target_recall: float | None = Field(
        None, gt=0, lt=1, description="threshold for this recall (screening) instead of best F1")
    families: tuple[str, ...] = FAMILIES
    treatments: tuple[str, ...] = TREATMENTS
    search_iter: int = Field(4, ge=1, description="random configurations per (family, treatment)")
    cv_folds: int = Field(3, ge=2)
    search_rows: int = Field(60_000, ge=200, description="training rows the CV search samples")
    max_train_rows: int | None = Field(None, ge=200, description="cap on training rows")
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_size: float = Field(0.2, gt=0, lt=0.5)
    split_by: Literal["profile", "record"] = Field(
        "profile", description="what the train/test hash splits by: the answers (copies of the same "
        "answers on one side) or the record id (store/view.py)")
    compare_record_split: bool = Field(
        True, description="also refit the chosen model on the record-id split and report its test "
        "scores beside the profile split's (record_split_test_* in MLflow)")
    calibrations: tuple[str, ...] = Field(calibration.METHODS, description="calibrations compared")
    select: Literal["one_se", "best"] = Field(
        "one_se", description="which configuration of a search is kept: `one_se`, the cheapest to "
        "serve (trees x leaves) among those within one standard error of the best CV PR-AUC "
        "(Breiman's rule: the rest is fold noise); `best`, the highest CV PR-AUC")
    seed: int = 42
    bootstrap: int = Field(200, ge=20, description="resamples for the champion gate")
    shap_rows: int = Field(2000, ge=50)
    coverage_records: int = Field(
        500, ge=20, description="test records per number of blanked answers for the uncertainty "
        "range's measured coverage (model card)")
    threads: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    experiment: str = EXPERIMENT
    serialization: Literal["cloudpickle", "skops"] = Field(
        "cloudpickle", description="how the model is stored: cloudpickle loads fast; skops refuses "
        "types it was not told to trust (for registries others can write to)")

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in FAMILIES]
        if unknown or not value:
            raise ValueError(f"unknown model families {unknown}; known: {', '.join(FAMILIES)}")
        return value

    @field_validator("calibrations")
    @classmethod
    def _known_calibrations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in calibration.METHODS]
        if unknown or not value:
            raise ValueError(f"unknown calibrations {unknown}; known: {', '.join(calibration.METHODS)}")
        return value

    @field_validator("treatments")
    @classmethod
    def _known_treatments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in TREATMENTS]
        if unknown or not value:
            raise ValueError(f"unknown imbalance treatments {unknown}; known: {', '.join(TREATMENTS)}")
        return value

    @classmethod
    def for_quick(cls, **overrides: Any) -> TrainSettings:
        """A small sample and a tiny search: under a minute, for tests and smoke runs."""
        values: dict[str, Any] = {"quick": True, "search_iter": 1, "cv_folds": 2, "search_rows": 3000,
                                  "threads": 1,  # worker processes cost more than they save here
                                  "max_train_rows": 20_000, "bootstrap": 100, "shap_rows": 300,
                                  "coverage_records": 150}
        values.update(overrides)
        return cls(**values)


@dataclass
class Candidate:
    """One (family, treatment) search: CV scores, its best parameters and, if refitted, test scores."""

    family: str
    treatment: str
    params: dict[str, Any]
    cv_pr_auc: float
    cv_pr_auc_std: float
    cv_roc_auc: float
    cv_brier: float
    search_seconds: float
    fit_seconds: float = float("nan")
    holdout_pr_auc: float = float("nan")
    test: dict[str, float] = field(default_factory=dict)
    chosen: bool = False
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    cv_best_pr_auc: float = float("nan")  # the search's best configuration, when another was kept

    def row(self) -> dict[str, Any]:
        return {
            "family": self.family, "treatment": self.treatment,
            "cv_pr_auc": round(self.cv_pr_auc, 4), "cv_pr_auc_std": round(self.cv_pr_auc_std, 4),
            "cv_best_pr_auc": round(self.cv_best_pr_auc, 4),
            "cv_roc_auc": round(self.cv_roc_auc, 4), "cv_brier_uncalibrated": round(self.cv_brier, 4),
            "search_s": round(self.search_seconds, 1), "fit_s": round(self.fit_seconds, 1),
            "holdout_pr_auc": round(self.holdout_pr_auc, 4),
            "calibration": next((c["method"] for c in self.calibrations if c["chosen"]), ""),
            **{f"test_{k}": round(self.test[k], 4) for k in ("roc_auc", "pr_auc", "brier", "f1")
               if k in self.test},
            "chosen": self.chosen, "params": json.dumps(plain(self.params)),
        }


@dataclass
class Prepared:
    """The split, turned into model inputs, with the held-out real slice cut from the training side."""

    split: Split
    X_fit: pd.DataFrame
    y_fit: np.ndarray
    X_holdout: pd.DataFrame
    y_holdout: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    base_rate: float
    synthetic_rows: int = 0


# ---------------------------------------------------------------------------------------- data
def prepare(split: Split, ts: TrainSettings) -> Prepared:
    """Model inputs from a split: synthetic rows capped, rows capped, and a held-out slice of the
    real training records cut for model choice, calibration and the threshold."""
    X, y, sources = split.X_train, split.y_train.to_numpy(), split.train_sources.to_numpy()
    keep = _cap_synthetic(sources, ts.max_synthetic_share, ts.seed)
    if keep is not None:
        X, y, sources = X.iloc[keep].reset_index(drop=True), y[keep], sources[keep]
    if ts.max_train_rows and len(y) > ts.max_train_rows:
        keep = _stratified_sample(y, ts.max_train_rows, ts.seed)
        X, y, sources = X.iloc[keep].reset_index(drop=True), y[keep], sources[keep]
    real = np.isin(sources, REAL_SOURCES)
    _check_positives("training side (real records)", y[real])
    _check_positives("test side", split.y_test.to_numpy())
    real_idx = np.flatnonzero(real)
    _, held = train_test_split(real_idx, test_size=ts.holdout_fraction, stratify=y[real],
                               random_state=ts.seed)
    in_holdout = np.zeros(len(y), dtype=bool)
    in_holdout[held] = True
    X_model = model_input(X, validate=False)
    return Prepared(
        split=split,
        X_fit=X_model[~in_holdout].reset_index(drop=True), y_fit=y[~in_holdout],
        X_holdout=X_model[in_holdout].reset_index(drop=True), y_holdout=y[in_holdout],
        X_test=model_input(split.X_test, validate=False), y_test=split.y_test.to_numpy(),
        base_rate=float(y[real].mean()), synthetic_rows=int((~real).sum()),
    )


def _cap_synthetic(sources: np.ndarray, share: float, seed: int) -> np.ndarray | None:
    """Rows to keep so synthetic rows are at most ``share`` of the real ones (None: keep all).

    Synthetic rows never helped on the dev data and hurt once they were half as many as the real ones
    (docs/training.md); 100 a day for years would get there, so the training side takes a seeded
    sample of them instead."""
    synthetic = np.flatnonzero(~np.isin(sources, REAL_SOURCES))
    allowed = int(share * (len(sources) - len(synthetic)))
    if len(synthetic) <= allowed:
        return None
    dropped = np.random.default_rng(seed).choice(synthetic, len(synthetic) - allowed, replace=False)
    return np.setdiff1d(np.arange(len(sources)), dropped)


def _check_positives(where: str, y: np.ndarray) -> None:
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives < MIN_POSITIVES or negatives < MIN_POSITIVES:
        raise TrainError(f"the {where} has {positives} records with heart disease and {negatives} "
                         f"without; at least {MIN_POSITIVES} of each are needed. Ingest more data "
                         "(`heartrisk ingest`).")


def _stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(y):
        return np.arange(len(y))
    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


# ---------------------------------------------------------------------------------------- search
def search(data: Prepared, ts: TrainSettings, on_done: Any = None) -> list[Candidate]:
    """Randomized search over stratified k-fold CV per (family, treatment), scored by PR-AUC."""
    sample = _stratified_sample(data.y_fit, ts.search_rows, ts.seed)
    X, y = data.X_fit.iloc[sample], data.y_fit[sample]
    folds = StratifiedKFold(ts.cv_folds, shuffle=True, random_state=ts.seed)
    found = []
    for family in ts.families:
        for treatment in ts.treatments:
            started = time.perf_counter()
            n_iter = search_budget(ts.search_iter, treatment)
            searcher = RandomizedSearchCV(
                build_pipeline(family, treatment, ts.seed, threads=1), CANDIDATES[family],
                n_iter=n_iter, cv=folds, random_state=ts.seed, refit=False,
                scoring={"pr_auc": "average_precision", "roc_auc": "roc_auc",
                         "brier": "neg_brier_score"},
                n_jobs=min(ts.threads, n_iter * ts.cv_folds), error_score="raise",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                searcher.fit(X, y)
            results = pd.DataFrame(searcher.cv_results_)
            best = results.loc[one_standard_error(results, family, ts.cv_folds) if ts.select == "one_se"
                               else results["mean_test_pr_auc"].idxmax()]
            found.append(Candidate(
                family=family, treatment=treatment, params=dict(best["params"]),
                cv_pr_auc=float(best["mean_test_pr_auc"]), cv_pr_auc_std=float(best["std_test_pr_auc"]),
                cv_roc_auc=float(best["mean_test_roc_auc"]), cv_brier=float(-best["mean_test_brier"]),
                search_seconds=time.perf_counter() - started,
                cv_best_pr_auc=float(results["mean_test_pr_auc"].max()),
            ))
            if on_done:
                on_done()
    return found


def one_standard_error(results: pd.DataFrame, family: str, folds: int) -> Any:
    """The row of a search's ``cv_results_`` to keep: the cheapest to serve (:func:`serving_cost`)
    among the configurations whose mean CV PR-AUC is within one standard error of the best's.

    Differences smaller than the spread between folds are not evidence that one configuration is
    better; a smaller model is faster to explain (issue 16) and no worse within that noise. Ties in
    cost go to the higher score.
    """
    scores = results["mean_test_pr_auc"]
    best = scores.idxmax()
    spread = results.at[best, "std_test_pr_auc"]
    if not np.isfinite(spread):  # no spread to judge by: the best score
        return best
    close = results[scores >= scores[best] - spread / np.sqrt(folds)]
    cost = close["params"].map(lambda params: serving_cost(family, params))
    return min(close.index, key=lambda i: (cost[i], -scores[i]))


def search_budget(search_iter: int, treatment: str) -> int:
    """Configurations to try for one pair. SMOTE gets half: it triples the cost of a fit and came last
    in every family on the dev data (docs/training.md), so full budgets there buy nothing."""
    return max(1, search_iter // 2) if treatment == "smote" else search_iter


def fit_candidate(candidate: Candidate, data: Prepared, ts: TrainSettings) -> RiskModel:
    """Refit a candidate on the whole training side; calibrate and set the threshold on the holdout."""
    started = time.perf_counter()
    pipeline = build_pipeline(candidate.family, candidate.treatment, ts.seed, threads=ts.threads)
    pipeline.set_params(**candidate.params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipeline.fit(data.X_fit, data.y_fit)
    without_training_rows(pipeline)
    candidate.fit_seconds = time.perf_counter() - started
    margin = raw_margin(pipeline, data.X_holdout)
    chosen, candidate.calibrations = calibration.choose(margin, data.y_holdout, ts.seed, ts.calibrations)
    p_holdout = sigmoid(chosen(margin))
    # Ranked by the raw scores: an isotonic map fitted on this slice flattens ties into it.
    candidate.holdout_pr_auc = average_precision(data.y_holdout, margin)
    if ts.target_recall is not None:
        threshold = recall_threshold(data.y_holdout, p_holdout, ts.target_recall)
    else:
        threshold = best_f1_threshold(data.y_holdout, p_holdout)
    background = None
    if candidate.family == "logreg":
        sample = _stratified_sample(data.y_fit, 20_000, ts.seed)
        background = transform(pipeline, data.X_fit.iloc[sample]).mean(axis=0)
    info = {"family": candidate.family, "treatment": candidate.treatment,
            "params": plain(candidate.params)}
    return RiskModel(pipeline, chosen, threshold, data.base_rate, background, info)


def plain(params: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python, so parameters log and serialise cleanly."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}

