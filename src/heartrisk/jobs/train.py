"""Train: the ``heart`` feature group -> a calibrated, explained, registered classifier.

1. A FeatureView split: the test side holds real records only (by a seeded hash of record_id, so
   it stays put as the table grows); synthetic rows join training when there are any (a setting).
   A stratified slice of the *real* training records is held out for model choice, calibration and
   the threshold, so the test side is touched once, at the end.
2. Each (family, imbalance treatment) pair gets a randomized search over stratified k-fold CV on a
   sample of the training side, scored by average precision; each family's best is refitted on the
   whole training side and the family with the best held-out PR-AUC wins.
3. Platt calibration and the threshold (best F1, or a target recall) come from the held-out slice.
4. Everything is logged to MLflow (experiment ``training``) and the model is registered as
   ``heart-risk-classifier``; it becomes champion only if it beats the current champion's PR-AUC on
   the same real test records by more than a paired bootstrap says chance can.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, train_test_split

from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import FEATURES
from heartrisk.model.estimator import (
    CANDIDATES,
    FAMILIES,
    TREATMENTS,
    Platt,
    RiskModel,
    build_pipeline,
    model_input,
    raw_margin,
    sigmoid,
    transform,
)
from heartrisk.model.evaluation import (
    Comparison,
    average_precision,
    best_f1_threshold,
    compare,
    recall_threshold,
    save_plots,
    scores,
)
from heartrisk.model.registry import MODEL_NAME, NoModelError, champion_model, promote
from heartrisk.progress import progress_bar
from heartrisk.store.groups import HEART, REAL_SOURCES, from_sources, open_group
from heartrisk.store.table import StoreError
from heartrisk.store.view import FeatureView, Split
from heartrisk.tracking import experiment_id

EXPERIMENT = "training"
#: Fewest positive records on each side below which a model cannot be judged.
MIN_POSITIVES = 20
#: Sources whose test records the champion gate judges by (curated data, not shared outcomes).
GATE_SOURCES: tuple[str, ...] = ("kaggle",)


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
    seed: int = 42
    bootstrap: int = Field(200, ge=20, description="resamples for the champion gate")
    shap_rows: int = Field(2000, ge=50)
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
                                  "max_train_rows": 20_000, "bootstrap": 100, "shap_rows": 300}
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

    def row(self) -> dict[str, Any]:
        return {
            "family": self.family, "treatment": self.treatment,
            "cv_pr_auc": round(self.cv_pr_auc, 4), "cv_pr_auc_std": round(self.cv_pr_auc_std, 4),
            "cv_roc_auc": round(self.cv_roc_auc, 4), "cv_brier_uncalibrated": round(self.cv_brier, 4),
            "search_s": round(self.search_seconds, 1), "fit_s": round(self.fit_seconds, 1),
            "holdout_pr_auc": round(self.holdout_pr_auc, 4),
            **{f"test_{k}": round(self.test[k], 4) for k in ("roc_auc", "pr_auc", "brier", "f1")
               if k in self.test},
            "chosen": self.chosen, "params": json.dumps(_plain(self.params)),
        }


@dataclass
class TrainResult:
    """What a run produced: the registered version, whether it became champion and why."""

    version: str
    run_id: str
    promoted: bool
    decision: str
    family: str
    treatment: str
    threshold: float
    metrics: dict[str, float]
    candidates: pd.DataFrame
    split: dict[str, Any]
    seconds: float
    comparison: Comparison | None = None


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
def load_data(settings: Settings, ts: TrainSettings) -> Prepared:
    """Split ``heart`` and cut the held-out slice (real training records only)."""
    group = open_group(settings, HEART)
    if not group.exists():
        raise StoreError(f"feature group {HEART.table_name} does not exist yet; "
                         "run `heartrisk ingest` first")
    split = FeatureView(group).train_test_split(test_size=ts.test_size, seed=ts.seed,
                                                include_synthetic=ts.include_synthetic)
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
            best = results.loc[results["mean_test_pr_auc"].idxmax()]
            found.append(Candidate(
                family=family, treatment=treatment, params=dict(best["params"]),
                cv_pr_auc=float(best["mean_test_pr_auc"]), cv_pr_auc_std=float(best["std_test_pr_auc"]),
                cv_roc_auc=float(best["mean_test_roc_auc"]), cv_brier=float(-best["mean_test_brier"]),
                search_seconds=time.perf_counter() - started,
            ))
            if on_done:
                on_done()
    return found


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
    candidate.fit_seconds = time.perf_counter() - started
    margin = raw_margin(pipeline, data.X_holdout)
    calibration = Platt.fit(margin, data.y_holdout)
    p_holdout = sigmoid(calibration(margin))
    candidate.holdout_pr_auc = average_precision(data.y_holdout, p_holdout)
    if ts.target_recall is not None:
        threshold = recall_threshold(data.y_holdout, p_holdout, ts.target_recall)
    else:
        threshold = best_f1_threshold(data.y_holdout, p_holdout)
    background = None
    if candidate.family == "logreg":
        sample = _stratified_sample(data.y_fit, 20_000, ts.seed)
        background = transform(pipeline, data.X_fit.iloc[sample]).mean(axis=0)
    info = {"family": candidate.family, "treatment": candidate.treatment,
            "params": _plain(candidate.params)}
    return RiskModel(pipeline, calibration, threshold, data.base_rate, background, info)


# ---------------------------------------------------------------------------------------- run
def train(settings: Settings, ts: TrainSettings | None = None) -> TrainResult:
    """Fit, evaluate, log and register a classifier; promote it only if it passes the gate."""
    ts = ts or TrainSettings()
    started = time.perf_counter()
    settings.ensure_home()
    with progress_bar() as bar:
        task = bar.add_task("reading heart", total=None)
        data = load_data(settings, ts)
        bar.update(task, total=1, completed=1, description=f"read heart v{data.split.table_version}")
        searching = bar.add_task("searching candidates", total=len(ts.families) * len(ts.treatments))
        candidates = search(data, ts, on_done=lambda: bar.advance(searching))
        finalists = [max((c for c in candidates if c.family == f), key=lambda c: c.cv_pr_auc)
                     for f in ts.families]
        fitting = bar.add_task("refitting each family's best", total=len(finalists))
        models: dict[str, RiskModel] = {}
        for candidate in finalists:
            model = fit_candidate(candidate, data, ts)
            candidate.test = scores(data.y_test, model.risk(data.X_test, validate=False),
                                    model.threshold)
            models[candidate.family] = model
            bar.advance(fitting)
        chosen = max(finalists, key=lambda c: c.holdout_pr_auc)
        chosen.chosen = True
        model = models[chosen.family]
        p_test = model.risk(data.X_test, validate=False)
        metrics = scores(data.y_test, p_test, model.threshold)
        gating = bar.add_task("champion gate", total=1)
        comparison, decision = gate(settings, data, p_test, ts)
        bar.advance(gating)
        logging_task = bar.add_task("logging to MLflow", total=1)
        table = pd.DataFrame([c.row() for c in candidates])
        version, run_id = log_run(settings, ts, data, model, chosen, metrics, table, p_test,
                                  comparison, decision)
        promoted = decision.startswith("promoted")
        if promoted:
            promote(settings, version, decision)
        bar.advance(logging_task)
    return TrainResult(
        version=version, run_id=run_id, promoted=promoted, decision=decision,
        family=chosen.family, treatment=chosen.treatment, threshold=model.threshold,
        metrics=metrics, candidates=table, split=data.split.summary(),
        seconds=time.perf_counter() - started, comparison=comparison,
    )


def gate(settings: Settings, data: Prepared, p_test: np.ndarray,
         ts: TrainSettings) -> tuple[Comparison | None, str]:
    """Compare with the champion on the same curated test records (:data:`GATE_SOURCES`); in words."""
    try:
        champion = champion_model(settings)
    except NoModelError:
        return None, "promoted: there was no champion"
    try:
        p_champion = champion.predict_proba(data.split.X_test)
    except Exception as exc:  # a champion that cannot score today's records cannot defend its title
        return None, (f"promoted: champion v{champion.version} could not score the test records "
                      f"({type(exc).__name__}: {exc})")
    # Only records from a curated source judge: shared outcomes are real but unverified, and a flood
    # of wrongly labelled ones on the test side could otherwise crown a model fitted to them.
    trusted = from_sources(data.split.test_ids, GATE_SOURCES)
    y_gate = data.y_test[trusted]
    if min(int(y_gate.sum()), int(len(y_gate) - y_gate.sum())) < MIN_POSITIVES:
        return None, (f"kept out: only {len(y_gate):,} test records from {', '.join(GATE_SOURCES)} "
                      f"({int(y_gate.sum())} with heart disease); the gate needs {MIN_POSITIVES} of each")
    comparison = compare(y_gate, p_champion[trusted], p_test[trusted], resamples=ts.bootstrap, seed=ts.seed)
    words = (f"PR-AUC {comparison.challenger:.4f} vs champion v{champion.version} "
             f"{comparison.champion:.4f} on {len(y_gate):,} {'/'.join(GATE_SOURCES)} test records: "
             f"difference "
             f"{comparison.difference:+.4f}, 95% bootstrap interval [{comparison.low:+.4f}, "
             f"{comparison.high:+.4f}]")
    if comparison.significant:
        return comparison, f"promoted: {words}"
    return comparison, f"kept out: {words} (not better by more than the noise)"


# ---------------------------------------------------------------------------------------- MLflow
def log_run(settings: Settings, ts: TrainSettings, data: Prepared, model: RiskModel,
            chosen: Candidate, metrics: dict[str, float], table: pd.DataFrame, p_test: np.ndarray,
            comparison: Comparison | None, decision: str) -> tuple[str, str]:
    """One MLflow run with everything behind the choice; returns (registered version, run id)."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    experiment = experiment_id(settings, ts.experiment)
    split = data.split
    commit, dirty = git_commit()
    with mlflow.start_run(experiment_id=experiment,
                          run_name=f"{chosen.family}-{chosen.treatment}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mlflow.set_tags({"mlflow.source.git.commit": commit, "git_dirty": str(dirty),
                         "quick": str(ts.quick), "decision": decision})
        mlflow.log_params({
            "family": chosen.family, "treatment": chosen.treatment,
            **{k.removeprefix("classify__"): v for k, v in _plain(chosen.params).items()},
            "calibration": "platt", "calibration_slope": round(model.slope, 5),
            "calibration_intercept": round(model.intercept, 5),
            "threshold": round(model.threshold, 6),
            "threshold_rule": f"recall>={ts.target_recall}" if ts.target_recall else "best_f1",
            "base_rate": round(model.base_rate, 6),
            "feature_group": split.group, "feature_group_version": split.table_version,
            "train_rows": len(data.y_fit), "holdout_rows": len(data.y_holdout),
            "test_rows": len(data.y_test), "train_synthetic_rows": data.synthetic_rows,
            "synthetic_rows_available": split.summary()["train_synthetic_rows"],
            "max_synthetic_share": ts.max_synthetic_share,
            "include_synthetic": ts.include_synthetic, "seed": ts.seed, "quick": ts.quick,
            "search_iter": ts.search_iter, "cv_folds": ts.cv_folds, "search_rows": ts.search_rows,
            "git_commit": commit,
        })
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({"cv_pr_auc": chosen.cv_pr_auc, "cv_pr_auc_std": chosen.cv_pr_auc_std,
                            "holdout_pr_auc": chosen.holdout_pr_auc})
        if comparison is not None:
            mlflow.log_metrics({"gate_champion_pr_auc": comparison.champion,
                                "gate_difference": comparison.difference,
                                "gate_low": comparison.low, "gate_high": comparison.high})
        _log_inputs(settings, data)
        title = f"{chosen.family} / {chosen.treatment} (test, real records)"
        for path in save_plots(data.y_test, p_test, model.threshold, folder / "plots", title):
            mlflow.log_artifact(str(path), "plots")
        shap_plot = save_shap_summary(model, data, ts, folder / "plots")
        mlflow.log_artifact(str(shap_plot), "plots")
        table.to_csv(folder / "candidates.csv", index=False)
        mlflow.log_artifact(str(folder / "candidates.csv"))
        mlflow.log_text(table.drop(columns="params").to_markdown(index=False)
                        if _has_tabulate() else table.to_string(index=False), "candidates.md")
        tags = {"decision": decision,
                **{f"test_{k}": f"{metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "brier", "f1")}}
        version = _log_model(model, data, tags, ts.serialization)
        return version, run.info.run_id


def _log_inputs(settings: Settings, data: Prepared) -> None:
    """The feature group name and Delta version read, for training and test (mlflow.log_input).

    Metadata only (a Delta source, the schema, a digest of the exact record ids, row counts): MLflow's
    pandas dataset infers a schema from every row, which took longer than the quick train itself."""
    import hashlib

    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    split = data.split
    source = DeltaDatasetSource(path=open_group(settings, HEART).uri,
                                delta_table_version=split.table_version)
    schema = Schema([*(ColSpec("double" if f.is_numeric else "string", f.name, required=False)
                       for f in FEATURES), ColSpec("boolean", "heart_disease")])
    for context, ids, y in (("training", split.train_ids, split.y_train),
                            ("testing", split.test_ids, split.y_test)):
        hashed = pd.util.hash_pandas_object(ids.sort_values(), index=False).to_numpy()
        digest = hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
        dataset = MetaDataset(source, name=f"{split.group}@v{split.table_version}", digest=digest,
                              schema=schema)
        mlflow.log_input(dataset, context=context,
                         tags={"rows": str(len(ids)), "positive_rate": f"{float(y.mean()):.5f}"})


def _log_model(model: RiskModel, data: Prepared, extra_tags: dict[str, str],
               serialization: str) -> str:
    """Log the model and register it; returns the version.

    ``skops`` records the model's trusted types with it; ``cloudpickle`` loads about 10 s faster
    per process here (importing skops enumerates every scikit-learn estimator, which imports torch)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("double" if f.is_numeric else "string", f.name, required=False)
                     for f in FEATURES])
    outputs = Schema([TensorSpec(np.dtype("float64"), (-1, 2), "probabilities")])
    example = data.X_test.head(3).astype(object).where(data.X_test.head(3).notna(), None)
    example.loc[0, ["bmi", "smoking", "gen_health"]] = None  # show that Unknown is accepted
    trusted = None
    if serialization == "skops":
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    info = mlflow.sklearn.log_model(
        model, name="model", serialization_format=serialization, skops_trusted_types=trusted,
        signature=ModelSignature(inputs=inputs, outputs=outputs), input_example=example,
        pyfunc_predict_fn="predict_proba", pip_requirements=_requirements(),
        registered_model_name=MODEL_NAME,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    tags = {"family": model.info["family"], "treatment": model.info["treatment"],
            "threshold": f"{model.threshold:.6f}", "base_rate": f"{model.base_rate:.6f}",
            "feature_group": data.split.group,
            "feature_group_version": str(data.split.table_version)}
    tags.update(extra_tags)
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    return version


def _requirements() -> list[str]:
    from importlib.metadata import version

    names = ("scikit-learn", "imbalanced-learn", "lightgbm", "skops", "pandas", "numpy", "shap")
    return [f"{n}=={version(n)}" for n in names]


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def save_shap_summary(model: RiskModel, data: Prepared, ts: TrainSettings, folder: Path) -> Path:
    """Mean |SHAP| per question (bar) and each row's contribution (dots), on test records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from heartrisk.model.explain import explain, mean_abs

    rows = data.X_test.sample(min(ts.shap_rows, len(data.X_test)), random_state=ts.seed)
    contributions, _ = explain(model, rows, validate=False)
    order = mean_abs(contributions).index[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6), sharey=True)
    positions = np.arange(len(order))
    left.barh(positions, contributions[order].abs().mean().to_numpy(), color="#c0392b")
    left.set_yticks(positions, list(order))
    left.set_xlabel("mean |SHAP| (log-odds)")
    rng = np.random.default_rng(0)
    for i, name in enumerate(order):
        values = contributions[name].to_numpy()
        right.scatter(values, i + rng.uniform(-0.3, 0.3, len(values)), s=3, alpha=0.3, c="#2c3e50")
    right.axvline(0, c="grey", lw=0.8)
    right.set_xlabel("SHAP contribution per person (log-odds; > 0 raises risk)")
    fig.suptitle(f"What drives the risk: {len(rows):,} test records, grouped by question")
    path = folder / "shap_summary.png"
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def git_commit() -> tuple[str, bool]:
    """The source's git commit and whether the tree had uncommitted changes ("unknown" outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, dirty


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python, so parameters log and serialise cleanly."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}

