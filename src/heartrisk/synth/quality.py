"""How close a synthesizer's rows are to real rows it never saw.

Two views, both on held-out real rows: the SDMetrics quality report (column shapes and pair trends)
and TSTR, the ROC-AUC of a fixed classifier trained on synthetic rows, next to TRTR, the same
classifier trained on real rows. :func:`snapshot_score` measures a snapshot during the fit (TSTR first,
quality only when the snapshot could be kept); :func:`measure_quality` is the full report of a finished
fit.

sdmetrics and LightGBM are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from heartrisk.features import FEATURE_NAMES, FEATURES, LABEL
from heartrisk.synth.repair import repair
from heartrisk.synth.synthesizer import Synthesizer


def sdmetrics_metadata() -> dict[str, Any]:
    """The spec as SDMetrics metadata (one table, ``heart``)."""
    columns = {spec.name: {"sdtype": "numerical" if spec.is_numeric else "categorical"} for spec in FEATURES}
    columns[LABEL.name] = {"sdtype": "boolean"}
    return {"tables": {"heart": {"columns": columns}}}


def _report_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[[*FEATURE_NAMES, LABEL.name]].copy()
    out[LABEL.name] = out[LABEL.name].astype(bool)
    return out.reset_index(drop=True)


def quality_report(real: pd.DataFrame, synthetic: pd.DataFrame, details: bool = False) -> dict[str, Any]:
    """SDMetrics QualityReport (single table): overall, column shapes, column pair trends."""
    from sdmetrics.reports import QualityReport

    report = QualityReport()
    report.generate({"heart": _report_frame(real)}, {"heart": _report_frame(synthetic)},
                    sdmetrics_metadata(), verbose=False)
    scores = dict(zip(report.get_properties()["Property"], report.get_properties()["Score"], strict=True))
    out: dict[str, Any] = {
        "overall": float(report.get_score()),
        "column_shapes": float(scores["Column Shapes"]),
        "column_pair_trends": float(scores["Column Pair Trends"]),
    }
    if details:
        out["column_shapes_detail"] = report.get_details("Column Shapes", table_name="heart")
        out["column_pair_trends_detail"] = report.get_details("Column Pair Trends", table_name="heart")
    return out


def _classifier_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Features for the fixed TSTR classifier: numbers as they are, answers as fixed categories."""
    out = frame[list(FEATURE_NAMES)].copy()
    for spec in FEATURES:
        if spec.is_categorical:
            out[spec.name] = pd.Categorical(out[spec.name], categories=list(spec.values))
    return out


#: Trees of the fixed TSTR/TRTR classifier (learning rate 0.05); fewer trees get a larger rate.
TSTR_TREES = 200


def holdout_roc_auc(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0, trees: int = TSTR_TREES) -> float:
    """ROC-AUC on ``test`` of a fixed, fast LightGBM fitted on ``train`` (one thread: no OpenMP clash).

    ``trees`` below :data:`TSTR_TREES` make a cheaper proxy for snapshot scoring: the learning rate
    grows in proportion (0.05 x 200 / trees), so the model takes about as large steps in all.
    """
    from lightgbm import LGBMClassifier
    from sklearn.metrics import roc_auc_score

    model = LGBMClassifier(n_estimators=trees, learning_rate=0.05 * TSTR_TREES / trees, num_leaves=31,
                           min_child_samples=40, n_jobs=1, random_state=seed, verbose=-1)
    model.fit(_classifier_frame(train), train[LABEL.name].astype(int))
    scores = model.predict_proba(_classifier_frame(test))[:, 1]
    return float(roc_auc_score(test[LABEL.name].astype(int), scores))


@dataclass
class Quality:
    """How close the synthesizer's rows are to real rows it never saw."""

    metrics: dict[str, float]
    column_shapes: pd.DataFrame
    column_pair_trends: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "column_shapes": self.column_shapes.to_dict(orient="records"),
        }


def measure_quality(synth: Synthesizer, fit_rows: pd.DataFrame, eval_rows: pd.DataFrame,
                    seed: int = 0) -> Quality:
    """Every quality figure of one fit, measured on real ``eval_rows`` the fit did not see.

    * SDMetrics QualityReport of a rate-matched sample the size of ``eval_rows``;
    * positive rate: real, the raw (unconditioned) CTGAN output and the rate-matched sample;
    * share of raw rows that needed repair, and that had to be rejected;
    * TSTR: a fixed classifier trained on as many synthetic rows as the fit saw, tested on
      ``eval_rows``, next to TRTR: the same classifier trained on the fit rows themselves.
    """
    started = time.perf_counter()
    matched = synth.sample(len(eval_rows), seed=seed + 1)
    report = quality_report(eval_rows, matched.frame, details=True)
    raw = repair(synth.sample_raw(len(eval_rows)), synth.info.bounds, synth.info.precision)
    tstr_rows = synth.sample(len(fit_rows), seed=seed + 2).frame
    metrics = {
        "quality_overall": report["overall"],
        "quality_column_shapes": report["column_shapes"],
        "quality_column_pair_trends": report["column_pair_trends"],
        "positive_rate_real": float(eval_rows[LABEL.name].astype(bool).mean()),
        "positive_rate_fit": synth.info.positive_rate,
        "positive_rate_synthetic_raw": float(raw.frame[LABEL.name].astype(bool).mean()),
        "positive_rate_synthetic": matched.positive_rate,
        "repaired_share": raw.repaired / raw.drawn,
        "out_of_range_share": raw.out_of_range / raw.drawn,
        "rejected_share": raw.rejected / raw.drawn,
        "tstr_roc_auc": holdout_roc_auc(tstr_rows, eval_rows, seed),
        "trtr_roc_auc": holdout_roc_auc(fit_rows, eval_rows, seed),
        "eval_rows": float(len(eval_rows)),
    }
    metrics["tstr_gap"] = metrics["trtr_roc_auc"] - metrics["tstr_roc_auc"]
    metrics["quality_seconds"] = time.perf_counter() - started
    return Quality(metrics, report["column_shapes_detail"], report["column_pair_trends_detail"])


@dataclass(frozen=True)
class SnapshotScore:
    """One snapshot's figures on the selection rows: TSTR always, quality only when it could matter."""

    tstr: float
    quality: float | None = None

    @property
    def score(self) -> float:
        """What snapshots are ranked by: TSTR, or quality when TSTR cannot be measured."""
        return self.quality if math.isnan(self.tstr) and self.quality is not None else self.tstr


def snapshot_score(synth: Synthesizer, selection: pd.DataFrame, *, quality_rows: int, train_rows: int,
                   trees: int, seed: int, wants_quality: Callable[[float], bool]) -> SnapshotScore:
    """How good a snapshot is on held-out ``selection`` rows: about 1.5 CPU s, 3 with quality.

    TSTR: the ROC-AUC on all ``selection`` rows of the fixed classifier (``trees`` trees) trained on
    ``train_rows`` rate-matched synthetic rows; more test rows cost only predictions and halve the
    noise that made a snapshot look better than it was (5,000 -> 20,000 rows in the CTGAN lab).
    Quality: the SDMetrics overall score of a sample against the first ``quality_rows`` selection
    rows, measured only when ``wants_quality(tstr)`` says the snapshot could be kept (it is the dearer
    half). Selection rows with one label cannot rank: TSTR is NaN and quality is always measured.
    Sampling here must not disturb training: the global RNG states are put back afterwards.
    """
    import torch

    quality_real = selection.iloc[:quality_rows]
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng():
            sample = synth.sample(max(train_rows, len(quality_real)), seed=seed).frame
    finally:
        np.random.set_state(numpy_state)
    tstr = float("nan")
    if selection[LABEL.name].nunique() == 2:
        tstr = holdout_roc_auc(sample.iloc[:train_rows], selection, seed, trees=trees)
    if not (math.isnan(tstr) or wants_quality(tstr)):
        return SnapshotScore(tstr)
    return SnapshotScore(tstr, quality_report(quality_real, sample.iloc[:len(quality_real)])["overall"])
