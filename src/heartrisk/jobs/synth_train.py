"""`heartrisk synth train`: fit the CTGAN on real rows, measure its quality and its privacy, register
it, and make it the champion if it passes the gate (:mod:`heartrisk.synth.gate`: every privacy
threshold first, then not worse than the champion on quality and TSTR by more than
``SynthSettings.promote_tolerance``).

Which real rows: the synthesizer is fitted only on records of the classifier's *train* side (the
view's seeded hash split), so synthetic rows that later train a classifier carry nothing of the
records that classifier is tested on. Its quality and privacy are measured on the *test* side, split
in two: ``selection`` rows pick the best snapshot, disjoint ``eval`` rows give the reported figures
(and the privacy report's held-out rows; ``selection`` rows stand in for synthetic ones in its
real-vs-real baselines). Synthetic rows never train the synthesizer.

Consent scope: shared submissions (source ``user``) are left out unless the settings name a time
from which people agreed to it (``Settings.synth_submissions_from``); then only submissions shared
at or after it are used. The fit's lineage (table version, sources, user rows and the latest merge
time among them) is recorded on the registered version, for `heartrisk forget`. A fit one of whose
user rows a `forget` on any machine erased while it ran is registered marked and kept out
(:func:`register`, as `heartrisk train` does).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from heartrisk import tracking
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.jobs.erasure import HeartWatch, RegistrySteps, register_unless_forgotten
from heartrisk.progress import progress_bar
from heartrisk.store.groups import HEART, HEART_USER, open_group, user_record_ids
from heartrisk.store.lineage import Lineage, user_rows_read
from heartrisk.store.view import FeatureView, Split
from heartrisk.synth.fit import EpochReport, FitResult, SynthSettings, fit_synthesizer, training_frame
from heartrisk.synth.gate import GateDecision, PrivacyLimits, gate
from heartrisk.synth.privacy import PrivacyReport, PrivacySettings, measure_privacy
from heartrisk.synth.quality import Quality, measure_quality
from heartrisk.synth.registry import (
    DECISION_TAG,
    EXPERIMENT,
    REGISTERED_MODEL,
    PrivacyRiskError,
    champion_figures,
    mark_synthesizers,
    promote_synthesizer,
    register_synthesizer,
)
from heartrisk.synth.synthesizer import SynthError, Synthesizer
from heartrisk.tracking import ERASED_TAG, TrackedRun, erased_stamp

#: Fewest held-out real rows worth measuring quality on.
MIN_HOLDOUT_ROWS = 200


@dataclass(frozen=True)
class RealRows:
    """Fit, selection and evaluation rows (spec names, label as bool), the table version and the
    lineage to record on the registered version."""

    fit: pd.DataFrame
    selection: pd.DataFrame
    evaluation: pd.DataFrame
    table_version: int
    lineage: Lineage
    #: Record ids of the training side's rows a fit may use (those the lineage counts).
    train_ids: pd.Series

    def watch(self, settings: Settings) -> HeartWatch:
        """What tells, at registration, whether a `forget` erased one of these rows since they were read."""
        return HeartWatch.of(settings, self.train_ids)


@dataclass
class SynthTrainResult:
    version: str
    run_id: str
    metrics: dict[str, float]
    fit: FitResult
    rows: RealRows
    promoted: bool
    #: The gate's decision in words with the figures ("promoted: …" / "kept out: …").
    decision: str
    privacy: PrivacyReport | None = None
    limits: PrivacyLimits | None = None
    privacy_passed: bool = True

    @property
    def summary(self) -> str:
        """One line for the job record and the log (the decision has the figures)."""
        return f"synthesizer version {self.version}: {self.decision}"


def _frame(X: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    out = X[list(FEATURE_NAMES)].copy()
    out[LABEL.name] = y.astype(bool).to_numpy()
    return out


def fit_sources(settings: Settings) -> tuple[str, ...]:
    """The sources a fit may read: Kaggle records, and shared submissions only if people consented."""
    return ("kaggle", "user") if settings.synth_submissions_from is not None else ("kaggle",)


def consented_users(settings: Settings) -> set[str] | None:
    """Record ids of the submissions shared at or after ``synth_submissions_from`` (None: not used)."""
    since = settings.synth_submissions_from
    if since is None:
        return None
    group = open_group(settings, HEART_USER)
    if not group.exists():
        return set()
    shared = group.read(columns=["submission_id", "submitted_at"])
    return set(user_record_ids(shared.loc[shared["submitted_at"] >= pd.Timestamp(since), "submission_id"]))


def _keep(ids: pd.Series, users: set[str] | None) -> np.ndarray:
    """Rows a fit may use: every non-user row, and the user rows whose person agreed to it."""
    is_user = ids.str.startswith("user:").to_numpy()
    if users is None:
        return ~is_user
    return ~is_user | ids.isin(users).to_numpy()


def _consented_side(split: Split, users: set[str] | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    train_keep, test_keep = _keep(split.train_ids, users), _keep(split.test_ids, users)
    train = _frame(split.X_train[train_keep], split.y_train[train_keep])
    test = _frame(split.X_test[test_keep], split.y_test[test_keep])
    return train.reset_index(drop=True), test.reset_index(drop=True), split.train_ids[train_keep]


def real_rows(settings: Settings, synth: SynthSettings) -> RealRows:
    """Sample the fit rows from the train side and split the test side into selection + eval.

    ``heart`` is read at one version pinned inside one retried read, its purge time first (as
    :func:`heartrisk.jobs.train.read_heart` does): a `forget` that purges it under the reads re-pins
    the latest version, and one that purges it later shows at registration."""
    group = open_group(settings, HEART)
    sources = fit_sources(settings)
    view = FeatureView(group, sources=sources)
    users = consented_users(settings)

    def at(version: int) -> tuple[Split, tuple[int, datetime | None]]:
        split = view.train_test_split(test_size=synth.test_size, seed=synth.split_seed,
                                      include_synthetic=False, version=version)
        return split, user_rows_read(group, version, _consented_side(split, users)[2])

    split, (count, until) = group.reading(lambda: at(group.version()))
    train, test, train_ids = _consented_side(split, users)
    lineage = Lineage(group=split.group, table_version=split.table_version, sources=sources,
                      split_seed=synth.split_seed, test_size=synth.test_size, user_rows=count,
                      user_until=until, submissions_from=settings.synth_submissions_from,
                      split_by=split.by)
    if len(train) < synth.batch_size or len(test) < MIN_HOLDOUT_ROWS:
        raise SynthError(
            f"heart holds {len(train) + len(test):,} real rows ({len(train):,} to fit on, {len(test):,} "
            f"held out); fitting needs at least {synth.batch_size} and measuring {MIN_HOLDOUT_ROWS}: "
            "ingest the data first (`heartrisk ingest`)"
        )
    fit = train.sample(n=min(synth.rows, len(train)), random_state=synth.seed).reset_index(drop=True)
    test = test.sample(frac=1.0, random_state=synth.seed).reset_index(drop=True)
    wanted = synth.score_rows + synth.eval_rows
    selection_rows = synth.score_rows if len(test) >= wanted else len(test) * synth.score_rows // wanted
    selection = test.iloc[:selection_rows].reset_index(drop=True)
    evaluation = test.iloc[selection_rows:selection_rows + synth.eval_rows].reset_index(drop=True)
    return RealRows(fit, selection, evaluation, split.table_version, lineage, train_ids)


def _log_quality(run: TrackedRun, quality: Quality, fit: FitResult) -> None:
    """Quality as artifacts: the JSON summary, the per-column and per-pair details, the trace."""
    with tempfile.TemporaryDirectory(prefix="heartrisk-quality-") as tmp:
        folder = Path(tmp) / "quality"
        folder.mkdir()
        summary = {**quality.to_json(), "best_epoch": fit.synthesizer.info.best_epoch,
                   "best_selection_score": fit.synthesizer.info.best_score}
        (folder / "quality.json").write_text(json.dumps(summary, indent=2, default=float))
        quality.column_shapes.to_csv(folder / "column_shapes.csv", index=False)
        quality.column_pair_trends.to_csv(folder / "column_pair_trends.csv", index=False)
        pd.DataFrame([vars(r) for r in fit.history]).to_csv(folder / "training_trace.csv", index=False)
        run.log_artifacts(folder, "quality")


def _log_history(run: TrackedRun, history: list[EpochReport]) -> None:
    run.log_history(point for report in history for point in (
        ("generator_loss", report.generator_loss, report.epoch),
        ("discriminator_loss", report.discriminator_loss, report.epoch)))


def train_synthesizer(settings: Settings, synth: SynthSettings | None = None,
                      show_progress: bool = True, promote: bool = True,
                      privacy: PrivacySettings | None = None) -> SynthTrainResult:
    """Fit, measure, log and register a synthesizer; it becomes champion only through the gate.

    ``promote=False`` registers without promoting at all (the gate's verdict is still recorded).
    The run is marked FAILED if any step fails, and then nothing is registered.
    """
    synth = synth or SynthSettings()
    privacy = privacy or PrivacySettings()
    settings.ensure_home()
    rows = real_rows(settings, synth)
    epochs_auto = synth.epochs is None  # kept, so a refit after `forget` chooses them again
    synth = synth.for_rows(len(training_frame(rows.fit)))  # the epochs, when not given, follow the rows
    with tracking.run(settings, EXPERIMENT, "synth-train", tags={"job": "synth-train"}) as run:
        run.log_params({**synth.model_dump(), "epochs_auto": epochs_auto, "fit_rows": len(rows.fit),
                        "selection_rows": len(rows.selection), "eval_rows_used": len(rows.evaluation),
                        "heart_table_version": rows.table_version,
                        "fit_sources": ",".join(rows.lineage.sources),
                        "fit_user_rows": rows.lineage.user_rows,
                        **{f"privacy_{k}": v for k, v in privacy.model_dump(exclude={"limits"}).items()},
                        **{f"privacy_limit_{k}": v for k, v in privacy.limits.model_dump().items()}})
        fit = _fit_with_progress(rows, synth, show_progress, lambda report: _log_snapshot(run, report))
        quality = measure_quality(fit.synthesizer, rows.fit, rows.evaluation, seed=synth.seed)
        report = privacy_report(fit.synthesizer, rows, privacy, seed=synth.seed)
        metrics = {**quality.metrics, **report.metrics, "seconds_per_epoch": fit.seconds_per_epoch,
                   "fit_seconds": fit.fit_seconds, "fit_cpu_seconds": fit.fit_cpu_seconds,
                   "prepare_seconds": fit.prepare_seconds, "epochs_run": float(len(fit.history))}
        run.log_params({"best_epoch": fit.synthesizer.info.best_epoch})
        run.log_metrics(metrics)
        _log_history(run, fit.history)
        _log_quality(run, quality, fit)
        run.log_text(json.dumps({**report.to_json(), "limits": privacy.limits.model_dump()}, indent=2),
                     "privacy/privacy.json")
        decision = decide(settings, metrics, synth.promote_tolerance, promote, privacy.limits)
        run.set_tags({"decision": decision.text})
        version, decision = register(settings, run, fit.synthesizer, metrics, decision, rows)
    passed = decision.privacy.passed if decision.privacy is not None else True
    return SynthTrainResult(version, run.run_id, metrics, fit, rows, decision.promoted, decision.text,
                            report, privacy.limits, passed)


def register(settings: Settings, run: TrackedRun, synthesizer: Synthesizer, metrics: dict[str, float],
             decision: GateDecision, rows: RealRows) -> tuple[str, GateDecision]:
    """Register the fit and promote it as the gate decided, unless a `forget` erased a row of its
    training side since its rows were read (the same steps as a classifier's:
    :func:`~heartrisk.jobs.erasure.register_unless_forgotten`)."""
    lineage = rows.lineage.to_tags()

    def registered(decision: GateDecision, erased: bool) -> str:
        tags = {**lineage, ERASED_TAG: erased_stamp()} if erased else lineage
        return register_synthesizer(settings, run, synthesizer, metrics, decision, lineage=tags)

    steps = RegistrySteps(REGISTERED_MODEL, DECISION_TAG, registered,
                          lambda v: mark_synthesizers(settings, [v]),
                          lambda v, reason: promote_synthesizer(settings, v, reason), PrivacyRiskError)
    return register_unless_forgotten(settings, rows.watch(settings), run, decision, steps)


def privacy_report(synthesizer: Synthesizer, rows: RealRows, privacy: PrivacySettings,
                   seed: int) -> PrivacyReport:
    """The privacy report of a fit (:mod:`heartrisk.synth.privacy`); ``privacy_seconds`` counts the
    sampling too, so it is all the report adds to the fit."""
    started = time.perf_counter()
    sample = synthesizer.sample(privacy.synthetic_rows, seed=seed + 3).frame
    report = measure_privacy(rows.fit, rows.evaluation, rows.selection, sample, privacy)
    report.metrics["privacy_seconds"] = time.perf_counter() - started
    return report


def decide(settings: Settings, metrics: dict[str, float], tolerance: float, promote: bool,
           limits: PrivacyLimits | None = None) -> GateDecision:
    """The gate against the champion of this moment (read after the fit, not before it)."""
    verdict = gate(metrics, champion_figures(settings), tolerance, limits)
    if promote:
        return verdict
    return GateDecision(False, f"kept out: registered without promotion (the gate said {verdict.text!r})",
                        verdict.privacy)


def _log_snapshot(run: TrackedRun, report: EpochReport) -> None:
    run.log_metrics({"selection_score": report.score, "selection_quality": report.quality,
                     "selection_tstr_roc_auc": report.tstr}, step=report.epoch)


def _fit_with_progress(rows: RealRows, synth: SynthSettings, show: bool,
                       on_score: Callable[[EpochReport], None]) -> FitResult:
    """The fit under a progress bar: epoch, losses and the best snapshot so far.

    Snapshot scores go to the run as they come (``on_score``), so a long fit can be watched in MLflow.
    """
    bar = progress_bar()
    bar.disable = not show
    with bar:
        task = bar.add_task(f"preparing {len(rows.fit):,} rows", total=synth.epochs)

        def on_epoch(report: EpochReport) -> None:
            if report.score is not None:
                on_score(report)
            best = (f" · best {report.best_score:.3f} @{report.best_epoch}"
                    if report.best_score is not None else "")
            bar.update(task, completed=report.epoch, description=(
                f"epoch {report.epoch}/{report.epochs} · G {report.generator_loss:+.2f} "
                f"D {report.discriminator_loss:+.2f}{best}"))

        return fit_synthesizer(rows.fit, rows.selection, synth, on_epoch=on_epoch)


def describe(result: SynthTrainResult) -> dict[str, Any]:
    """The figures the CLI prints after a fit."""
    m = result.metrics
    return {
        "version": result.version, "promoted": result.promoted, "decision": result.decision,
        "fit_rows": len(result.rows.fit), "eval_rows": len(result.rows.evaluation),
        "best_epoch": result.fit.synthesizer.info.best_epoch, "quality": round(m["quality_overall"], 4),
        "column_shapes": round(m["quality_column_shapes"], 4),
        "column_pair_trends": round(m["quality_column_pair_trends"], 4),
        "positive_rate": (m["positive_rate_real"], m["positive_rate_synthetic_raw"],
                          m["positive_rate_synthetic"]),
        "repaired_share": m["repaired_share"], "rejected_share": m["rejected_share"],
        "tstr": m["tstr_roc_auc"], "trtr": m["trtr_roc_auc"],
        "seconds_per_epoch": m["seconds_per_epoch"], "fit_seconds": m["fit_seconds"],
        "fit_cpu_seconds": m["fit_cpu_seconds"],
    }
