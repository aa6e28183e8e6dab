"""Train: the ``heart`` feature group -> a calibrated, explained, registered classifier.

1. A FeatureView split: the test side holds real records only, by a seeded hash of their answers (copies
   of the same answers on one side; it stays put as the table grows); synthetic rows join training when
   there are any (a setting).
2. The candidates are searched, each family's best refitted and calibrated, the best on the held-out
   real slice chosen (:mod:`heartrisk.model.training`).
3. The champion gate compares it with the champion on the same real test records
   (:mod:`heartrisk.model.gate`). The chosen recipe is also refitted on the record-id split, whose
   test scores are reported beside (never gated on): the gap is how much that split flattered.
4. Everything is logged to one MLflow run (experiment ``training``: parameters, test metrics on both
   splits, the calibration comparison, the Delta table version read, plots, the candidate table, the
   git commit) and the model is registered as
   ``heart-risk-classifier`` with its lineage (:mod:`heartrisk.store.lineage`: what `heartrisk forget`
   needs to tell whether it learned from a person's row); it becomes champion only if the gate
   promoted it (:func:`heartrisk.model.registry.register_model`) and no `forget`, on any machine,
   erased a row of its training side since it was read (:func:`register`: else it is marked and kept
   out).

No artifact holds a person's answers: the input example is made from the feature spec, the SHAP plot
explains Kaggle test records only (shared submissions are never drawn per row), and a SMOTE step
keeps no neighbours (:func:`heartrisk.model.estimator.without_training_rows`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from heartrisk import tracking
from heartrisk.config import Settings
from heartrisk.features import FEATURES, LABEL
from heartrisk.jobs.erasure import HeartWatch, RegistrySteps, register_unless_forgotten
from heartrisk.model.card import build_card
from heartrisk.model.estimator import RiskModel, model_input
from heartrisk.model.evaluation import Comparison, scores
from heartrisk.model.explain import explain
from heartrisk.model.gate import GATE_SOURCES, ChampionScores, GateDecision, SubgroupScores, gate
from heartrisk.model.plots import save_plots, shap_summary_plot
from heartrisk.model.reference import build_reference
from heartrisk.model.registry import (
    MODEL_NAME,
    RegistryError,
    champion_scores,
    mark_classifiers,
    promote,
    register_model,
)
from heartrisk.model.training import (
    EXPERIMENT,
    Candidate,
    Prepared,
    TrainError,
    TrainSettings,
    fit_candidate,
    plain,
    prepare,
    search,
)
from heartrisk.monitoring.subgroups import subgroup_table
from heartrisk.progress import progress_bar
from heartrisk.store.groups import HEART, REAL_SOURCES, from_sources, open_group
from heartrisk.store.lineage import Lineage, user_rows_read
from heartrisk.store.table import StoreError
from heartrisk.store.view import FeatureView, Split
from heartrisk.tracking import ERASED_TAG, TrackedRun, erased_stamp

__all__ = ["EXPERIMENT", "TrainError", "TrainResult", "TrainSettings", "load_data", "read_heart", "train"]


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
    quick: bool = False
    calibrations: list[dict[str, Any]] | None = None
    record_split_metrics: dict[str, float] | None = None

    @property
    def summary(self) -> str:
        """One line for the job record and the log."""
        what = "quick settings" if self.quick else "full settings"
        return f"version {self.version} ({self.family}, {what}): {self.decision}"


@dataclass
class HeartReads:
    """What a training run reads of ``heart``, all at one table version (:func:`read_heart`)."""

    split: Split
    #: The record-id split reported beside the profile split (None when not compared).
    record_split: Split | None
    #: User rows on the training side and their latest event time (the lineage's erasure rule).
    user_rows: tuple[int, datetime | None]

    def watch(self, settings: Settings) -> HeartWatch:
        """What tells, at registration, whether a `forget` erased a row of the training side since
        these reads."""
        return HeartWatch.of(settings, self.split.train_ids)


def load_data(settings: Settings, ts: TrainSettings) -> Prepared:
    """Split ``heart`` and cut the held-out slice (real training records only)."""
    return prepare(read_heart(settings, ts).split, ts)


def read_heart(settings: Settings, ts: TrainSettings, record_split: bool = False) -> HeartReads:
    """Every read of ``heart`` a training run makes, at ONE version pinned inside one retried read.

    The record-id split used to be read after the whole search, back at the version the first split
    had pinned: a `forget` on another machine purged that version meanwhile and train died with a raw
    ``TableNotFoundError`` (attack helper: 1 of 3 `train --quick` runs). Inside one
    :meth:`~heartrisk.store.table.FeatureGroup.reading`, a purge under any of the reads re-pins the
    latest version and all are read again there. The cost: the record-id split is held through the
    search (one more copy of the rows read). ``heart``'s purge time is read first, in the same read:
    a purge after it but before the split re-reads both (:class:`~heartrisk.jobs.erasure.HeartWatch`)."""
    group = open_group(settings, HEART)
    if not group.exists():
        raise StoreError(f"feature group {HEART.table_name} does not exist yet; "
                         "run `heartrisk ingest` first")
    view = FeatureView(group, max_rows=settings.train_read_rows)
    knobs = {"test_size": ts.test_size, "seed": ts.seed, "include_synthetic": ts.include_synthetic}

    def at(version: int) -> HeartReads:
        split = view.train_test_split(**knobs, version=version, by=ts.split_by)
        twin = FeatureView(group).train_test_split(**knobs, version=version, by="record") \
            if record_split else None
        return HeartReads(split, twin, user_rows_read(group, version, split.train_ids))

    return group.reading(lambda: at(group.version()))


def record_split_scores(ts: TrainSettings, chosen: Candidate, split: Split) -> dict[str, float]:
    """The chosen recipe refitted on the record-id split (same table version) and its test scores."""
    data = prepare(split, ts)
    twin = Candidate(chosen.family, chosen.treatment, chosen.params, chosen.cv_pr_auc,
                     chosen.cv_pr_auc_std, chosen.cv_roc_auc, chosen.cv_brier, chosen.search_seconds)
    model = fit_candidate(twin, data, ts)
    return scores(data.y_test, model.risk(data.X_test, validate=False), model.threshold)


def train(settings: Settings, ts: TrainSettings | None = None) -> TrainResult:
    """Fit, evaluate, log and register a classifier; promote it only if it passes the gate."""
    ts = ts or TrainSettings()
    started = time.perf_counter()
    settings.ensure_home()
    with progress_bar() as bar:
        task = bar.add_task("reading heart", total=None)
        reads = read_heart(settings, ts, record_split=ts.compare_record_split and ts.split_by == "profile")
        data = prepare(reads.split, ts)
        bar.update(task, total=1, completed=1, description=f"read heart v{data.split.table_version}")
        searching = bar.add_task("searching candidates", total=len(ts.families) * len(ts.treatments))
        candidates = search(data, ts, on_done=lambda: bar.advance(searching))
        finalists = [max((c for c in candidates if c.family == f), key=lambda c: c.cv_pr_auc)
                     for f in ts.families]
        fitting = bar.add_task("refitting each family's best", total=len(finalists))
        models = {}
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
        describing = bar.add_task("survey reference and model card", total=1)
        describe(model, data, p_test, ts)
        bar.advance(describing)
        record_metrics = None
        if reads.record_split is not None:
            twin = bar.add_task("refitting on the record-id split", total=1)
            record_metrics = record_split_scores(ts, chosen, reads.record_split)
            bar.advance(twin)
        gating = bar.add_task("champion gate", total=1)
        champion = champion_scores(settings, data.split.X_test)
        decision = gate(data.split.test_ids, data.y_test, p_test, champion, ts.bootstrap, ts.seed,
                        subgroups=gate_subgroups(data, p_test, champion))
        bar.advance(gating)
        logging_task = bar.add_task("logging to MLflow", total=1)
        table = pd.DataFrame([c.row() for c in candidates])
        with tracking.run(settings, ts.experiment, f"{chosen.family}-{chosen.treatment}") as run:
            log_run(run, settings, ts, data, model, chosen, metrics, table, p_test, decision)
            log_comparisons(run, chosen, record_metrics)
            tags = {**version_tags(model, data), "decision": decision.text,
                    **training_lineage(data, ts, reads.user_rows).to_tags(),
                    **{f"test_{k}": f"{metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "brier", "f1")}}
            version, decision = register(settings, run, model, tags, decision, reads.watch(settings),
                                         ts.serialization)
        bar.advance(logging_task)
    return TrainResult(
        version=version, run_id=run.run_id, promoted=decision.promoted, decision=decision.text,
        family=chosen.family, treatment=chosen.treatment, threshold=model.threshold,
        metrics=metrics, candidates=table, split=data.split.summary(),
        seconds=time.perf_counter() - started, comparison=decision.comparison, quick=ts.quick,
        calibrations=chosen.calibrations, record_split_metrics=record_metrics,
    )


def register(settings: Settings, run: TrackedRun, model: RiskModel, tags: dict[str, str],
             decision: GateDecision, watch: HeartWatch, serialization: str) -> tuple[str, GateDecision]:
    """Register the model and promote it as the gate decided, unless a `forget` erased a row of its
    training side since it was read (:func:`~heartrisk.jobs.erasure.register_unless_forgotten`)."""

    def registered(decision: GateDecision, erased: bool) -> str:
        extra = {"decision": decision.text, ERASED_TAG: erased_stamp()} if erased else {}
        return register_model(settings, run, model, {**tags, **extra}, decision, serialization)

    steps = RegistrySteps(MODEL_NAME, "decision", registered, lambda v: mark_classifiers(settings, [v]),
                          lambda v, reason: promote(settings, v, reason), RegistryError)
    return register_unless_forgotten(settings, watch, run, decision, steps)


def describe(model: RiskModel, data: Prepared, p_test: np.ndarray, ts: TrainSettings) -> None:
    """Attach the survey aggregates and the model card to ``model`` (issue 17): both are computed
    here, once per version, so the server never needs a survey row."""
    split = data.split
    real = np.isin(split.train_sources.to_numpy(), REAL_SOURCES)
    X_real = model_input(split.X_train.loc[real], validate=False)
    reference = build_reference(model, X_real, data.X_holdout, data.y_holdout, ts.seed)
    model.reference = reference.to_dict()
    facts = {"feature_group": split.group, "feature_group_version": split.table_version,
             "training_records": int(real.sum()), "test_records": len(data.y_test),
             "test_positive_rate": float(np.mean(data.y_test))}
    model.card = build_card(model, reference, data.X_test, data.y_test, p_test, facts,
                            coverage_records=ts.coverage_records, seed=ts.seed)


# ---------------------------------------------------------------------------------------- MLflow
def gate_subgroups(data: Prepared, p_test: np.ndarray,
                   champion: ChampionScores | None) -> SubgroupScores | None:
    """Both models' subgroup tables on the judging (curated) test records, for the gate."""
    if champion is None or champion.probabilities is None:
        return None
    trusted = from_sources(data.split.test_ids, GATE_SOURCES)
    answers = data.split.X_test.reset_index(drop=True)[trusted]
    truth = np.asarray(data.y_test, dtype=bool)[trusted]

    def table(p: np.ndarray) -> pd.DataFrame:
        return subgroup_table(answers.assign(**{LABEL.name: truth, "probability": p[trusted]}))

    return SubgroupScores(challenger=table(np.asarray(p_test)), champion=table(champion.probabilities))


def log_run(run: TrackedRun, settings: Settings, ts: TrainSettings, data: Prepared, model: Any,
            chosen: Candidate, metrics: dict[str, float], table: pd.DataFrame, p_test: np.ndarray,
            decision: GateDecision) -> None:
    """Everything behind the choice: settings, lineage, test metrics, gate figures, plots, candidates."""
    split = data.split
    commit, dirty = git_commit()
    run.set_tags({"mlflow.source.git.commit": commit, "git_dirty": str(dirty), "quick": str(ts.quick),
                  "decision": decision.text})
    run.log_params({
        "family": chosen.family, "treatment": chosen.treatment,
        **{k.removeprefix("classify__"): v for k, v in plain(chosen.params).items()},
        "calibration": model.calibration.method, "split_by": split.by,
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
        "select": ts.select,
        "git_commit": commit,
    })
    run.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    run.log_metrics({"cv_pr_auc": chosen.cv_pr_auc, "cv_pr_auc_std": chosen.cv_pr_auc_std,
                     "cv_best_pr_auc": chosen.cv_best_pr_auc,
                     "holdout_pr_auc": chosen.holdout_pr_auc})
    if decision.comparison is not None:
        comparison = decision.comparison
        run.log_metrics({"gate_champion_pr_auc": comparison.champion,
                         "gate_difference": comparison.difference,
                         "gate_low": comparison.low, "gate_high": comparison.high})
    log_inputs(run, settings, data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        title = f"{chosen.family} / {chosen.treatment} (test, real records)"
        for path in save_plots(data.y_test, p_test, model.threshold, folder / "plots", title):
            run.log_artifact(path, "plots")
        curated = data.X_test[from_sources(data.split.test_ids, ("kaggle",))]  # per-row plot: no person
        rows = curated.sample(min(ts.shap_rows, len(curated)), random_state=ts.seed)
        contributions, _ = explain(model, rows, validate=False)
        run.log_artifact(shap_summary_plot(contributions, folder / "plots" / "shap_summary.png"), "plots")
        table.to_csv(folder / "candidates.csv", index=False)
        run.log_artifact(folder / "candidates.csv")
    if model.card is not None:
        run.log_text(json.dumps(model.card, indent=1), "model_card.json")
    run.log_text(table.drop(columns="params").to_markdown(index=False)
                 if _has_tabulate() else table.to_string(index=False), "candidates.md")


def log_comparisons(run: TrackedRun, chosen: Candidate, record_metrics: dict[str, float] | None) -> None:
    """The calibration comparison (Brier and ECE per method, out of fold on the held-out slice) and the
    record-id split's test scores, as metrics and as a table (calibration.csv)."""
    for row in chosen.calibrations:
        run.log_metrics({f"calibration_{row['method']}_brier": row["brier"],
                         f"calibration_{row['method']}_ece": row["ece"]})
    if chosen.calibrations:
        run.log_text(pd.DataFrame(chosen.calibrations).to_csv(index=False), "calibration.csv")
    if record_metrics:
        run.log_metrics({f"record_split_test_{k}": v for k, v in record_metrics.items()
                         if isinstance(v, float)})


def log_inputs(run: TrackedRun, settings: Settings, data: Prepared) -> None:
    """The feature group name and Delta version read, for training and test.

    Metadata only (a Delta source, the schema, a digest of the exact record ids, row counts): MLflow's
    pandas dataset infers a schema from every row, which took longer than the quick train itself."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    split = data.split
    source = DeltaDatasetSource(path=open_group(settings, HEART).uri, delta_table_version=split.table_version)
    schema = Schema([*(ColSpec("double" if f.is_numeric else "string", f.name, required=False)
                       for f in FEATURES), ColSpec("boolean", "heart_disease")])
    for context, ids, y in (("training", split.train_ids, split.y_train),
                            ("testing", split.test_ids, split.y_test)):
        hashed = pd.util.hash_pandas_object(ids.sort_values(), index=False).to_numpy()
        digest = hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
        dataset = MetaDataset(source, name=f"{split.group}@v{split.table_version}", digest=digest,
                              schema=schema)
        run.log_input(dataset, context, {"rows": str(len(ids)), "positive_rate": f"{float(y.mean()):.5f}"})


def version_tags(model: Any, data: Prepared) -> dict[str, str]:
    """What `heartrisk model list` and `status` show of a version without loading it."""
    return {"family": model.info["family"], "treatment": model.info["treatment"],
            "threshold": f"{model.threshold:.6f}", "base_rate": f"{model.base_rate:.6f}",
            "feature_group": data.split.group, "feature_group_version": str(data.split.table_version)}


def training_lineage(data: Prepared, ts: TrainSettings, user_rows: tuple[int, datetime | None]) -> Lineage:
    """What the model learned from (:mod:`heartrisk.store.lineage`): the training side's sources, its
    user rows and their latest merge time (read with the split, :func:`read_heart`), and the split
    that kept the test side out."""
    split = data.split
    count, until = user_rows
    return Lineage(group=split.group, table_version=split.table_version,
                   sources=tuple(sorted(set(split.train_sources))), split_seed=ts.seed,
                   test_size=ts.test_size, user_rows=count, user_until=until, split_by=split.by)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


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
