"""The classifier's champion gate: does a newly trained model replace the one that serves people?

The rule compares the new model with the champion on the *same* real test records, by a paired,
stratified bootstrap of the PR-AUC difference (:func:`heartrisk.model.evaluation.compare`):

* no champion, or a champion that cannot score today's records: promote (something must serve, and
  a champion that cannot defend its title does not keep it);
* a champion that learned from a row `heartrisk forget` erased: promote unless the new model is
  clearly worse (the whole 95 % interval below 0): the erased row must stop being served, and a
  retrain without it scores within the noise of the champion, so "better" would keep it forever;
* fewer than :data:`MIN_POSITIVES` records of either class among the judging records: keep out (the
  difference could not be told from noise);
* otherwise promote only if the whole 95 % interval of the difference is above 0,
* and then still keep out a model that is worse than the champion by more than
  :class:`GateTolerance` on calibration (Brier score, all judging records) or on ROC-AUC in any
  subgroup (sex, age band, race) with enough rows and cases on both sides: a better PR-AUC overall
  must not be bought with a group the model now serves worse, or with risks that no longer mean
  what they say. The subgroup tables come in as numbers
  (:func:`heartrisk.monitoring.subgroups.subgroup_table`, computed by the train job).

Only records from a curated source judge (:data:`GATE_SOURCES`): shared outcomes are real but
unverified, and a flood of wrongly labelled ones on the test side could otherwise crown a model fitted
to them. Pure: the champion's scores come in as numbers (:class:`ChampionScores`, read by
:func:`heartrisk.model.registry.champion_scores`), so the rule is tested on numbers alone, like the
synthesizer's gate (:mod:`heartrisk.synth.gate`), which has the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from heartrisk.model.evaluation import MIN_POSITIVES, Comparison, compare
from heartrisk.store.groups import from_sources

#: Sources whose test records the gate judges by (curated data, not shared outcomes).
GATE_SOURCES: tuple[str, ...] = ("kaggle",)


@dataclass(frozen=True)
class GateTolerance:
    """How much worse than the champion a promoted model may be on the secondary checks.

    Brier 0.002: on 58k test records of the dev data the Brier scores of two seeds of the same
    LightGBM differed by less than 0.0005, so 0.002 is a real loss of calibration, not noise.
    Subgroup ROC-AUC 0.02: a group of a few hundred rows moves by about 0.01-0.02 between
    resamples; larger drops are kept out.
    """

    brier: float = 0.002
    subgroup_roc_auc: float = 0.02


@dataclass(frozen=True)
class SubgroupScores:
    """Per subgroup (``attribute``, ``group``, ``roc_auc``; NaN when too small) of the candidate
    and of the champion, on the same judging records."""

    challenger: pd.DataFrame
    champion: pd.DataFrame


@dataclass(frozen=True)
class ChampionScores:
    """The champion's version and its probabilities on the test records, or why it has none."""

    version: str
    probabilities: np.ndarray | None
    error: str = ""
    #: The champion learned from an erased row (its registry version is tagged so).
    erased: bool = False


@dataclass(frozen=True)
class GateDecision:
    """Whether the new model becomes champion, why in words with the figures (kept as a tag), and
    the bootstrap comparison behind it when there was one."""

    promoted: bool
    text: str
    comparison: Comparison | None = None

    def __str__(self) -> str:
        return self.text


def gate(record_ids: pd.Series, y: np.ndarray, challenger: np.ndarray, champion: ChampionScores | None,
         resamples: int = 200, seed: int = 0, subgroups: SubgroupScores | None = None,
         tolerance: GateTolerance | None = None) -> GateDecision:
    """Promote the new model or keep it out (see the module docstring for the rule).

    ``record_ids``, ``y`` and ``challenger`` describe the test records in one order; the champion's
    probabilities are on the same records in the same order."""
    if champion is None:
        return GateDecision(True, "promoted: there was no champion")
    if champion.probabilities is None:
        return GateDecision(True, f"promoted: champion v{champion.version} could not score the test "
                                  f"records ({champion.error})")
    trusted = from_sources(record_ids, GATE_SOURCES)
    y_gate = np.asarray(y)[trusted]
    positives = int(y_gate.sum())
    if min(positives, len(y_gate) - positives) < MIN_POSITIVES:
        return GateDecision(False, f"kept out: only {len(y_gate):,} test records from "
                                   f"{', '.join(GATE_SOURCES)} ({positives} with heart disease); the gate "
                                   f"needs {MIN_POSITIVES} of each")
    comparison = compare(y_gate, champion.probabilities[trusted], np.asarray(challenger)[trusted],
                         resamples=resamples, seed=seed)
    words = (f"PR-AUC {comparison.challenger:.4f} vs champion v{champion.version} "
             f"{comparison.champion:.4f} on {len(y_gate):,} {'/'.join(GATE_SOURCES)} test records: "
             f"difference {comparison.difference:+.4f}, 95% bootstrap interval "
             f"[{comparison.low:+.4f}, {comparison.high:+.4f}]")
    if champion.erased:
        if comparison.high < 0:
            return GateDecision(False, f"kept out: {words}; clearly worse, although champion "
                                       f"v{champion.version} learned from erased rows", comparison)
        return GateDecision(True, f"promoted: champion v{champion.version} learned from erased rows and "
                                  f"this model did not: {words}", comparison)
    if not comparison.significant:
        return GateDecision(False, f"kept out: {words} (not better by more than the noise)", comparison)
    worse = secondary_losses(y_gate, np.asarray(challenger)[trusted], champion.probabilities[trusted],
                             subgroups, tolerance or GateTolerance())
    if worse:
        return GateDecision(False, f"kept out: {words}, but {'; '.join(worse)}", comparison)
    return GateDecision(True, f"promoted: {words}", comparison)


def secondary_losses(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray,
                     subgroups: SubgroupScores | None, tolerance: GateTolerance) -> list[str]:
    """Where the candidate is worse than the champion beyond the tolerance, in words (empty: nowhere)."""
    y = np.asarray(y, dtype=float)
    losses = []
    brier_new, brier_old = float(np.mean((challenger - y) ** 2)), float(np.mean((champion - y) ** 2))
    if brier_new - brier_old > tolerance.brier:
        losses.append(f"Brier {brier_new:.4f} vs champion {brier_old:.4f} (worse by more than "
                      f"{tolerance.brier:g})")
    if subgroups is not None:
        both = subgroups.challenger.merge(subgroups.champion, on=["attribute", "group"],
                                          suffixes=("_new", "_old"))
        for row in both.itertuples(index=False):
            new, old = float(row.roc_auc_new), float(row.roc_auc_old)
            if math.isfinite(new) and math.isfinite(old) and old - new > tolerance.subgroup_roc_auc:
                losses.append(f"ROC-AUC for {row.attribute}={row.group} {new:.4f} vs champion "
                              f"{old:.4f} (worse by more than {tolerance.subgroup_roc_auc:g})")
    return losses
