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
* otherwise promote only if the whole 95 % interval of the difference is above 0.

Only records from a curated source judge (:data:`GATE_SOURCES`): shared outcomes are real but
unverified, and a flood of wrongly labelled ones on the test side could otherwise crown a model fitted
to them. Pure: the champion's scores come in as numbers (:class:`ChampionScores`, read by
:func:`heartrisk.model.registry.champion_scores`), so the rule is tested on numbers alone, like the
synthesizer's gate (:mod:`heartrisk.synth.gate`), which has the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from heartrisk.model.evaluation import MIN_POSITIVES, Comparison, compare
from heartrisk.store.groups import from_sources

#: Sources whose test records the gate judges by (curated data, not shared outcomes).
GATE_SOURCES: tuple[str, ...] = ("kaggle",)


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
         resamples: int = 200, seed: int = 0) -> GateDecision:
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
    if comparison.significant:
        return GateDecision(True, f"promoted: {words}", comparison)
    return GateDecision(False, f"kept out: {words} (not better by more than the noise)", comparison)
