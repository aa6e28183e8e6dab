"""Erasure that reaches the models: which registered classifier and synthesizer versions learned from a
submission `heartrisk forget` erases, marking them, and replacing the champions among them.

`heartrisk forget` calls :func:`reach_models` *before* it deletes the row (the rule needs the row's
merge time and submission time, :mod:`heartrisk.store.lineage`), so a forget cut short and run again
marks the same versions (the mark is idempotent) and then deletes. A marked version (tag
``learned_from_erased_rows``):

* never becomes champion again (promote, rollback and the gates refuse it or replace it);
* if it is the champion classifier, it keeps serving until a model trained without the row replaces
  it: at the next scheduled retrain (the gate promotes a retrain over a marked champion unless the
  retrain is clearly worse), or at once with `heartrisk forget ID --retrain-now`
  (:func:`retrain_champions`, the champion's own recipe: quick or full);
* if it is the champion synthesizer, it is retired at once: the daily job no longer samples from it
  (its rows are released data) and the next fit replaces it; `--retrain-now` fits one now;
* archived versions (never or no longer champion) are kept, marked and never served; deleting them
  is the operator's call (`mlflow` can delete a model version; docs/reliability.md).

Kept apart from forget's table work so the two can grow separately (a cross-machine lease around
forget is planned): this module touches the registry only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.model import registry as classifiers
from heartrisk.store.groups import HEART, HEART_USER, open_group, user_record_id
from heartrisk.store.lineage import Lineage, may_hold_untagged
from heartrisk.synth import registry as synthesizers


@dataclass(frozen=True)
class Affected:
    """The versions that learned from one erased row, and whether a champion is among them."""

    classifiers: tuple[str, ...] = ()
    synthesizers: tuple[str, ...] = ()
    champion_classifier: str | None = None
    champion_synthesizer: str | None = None
    #: Whether the row had been merged into ``heart`` (else no model can have learned from it).
    merged: bool = False

    @property
    def any(self) -> bool:
        return bool(self.classifiers or self.synthesizers)

    @property
    def message(self) -> str:
        if not self.any:
            return ("no registered model learned from it" if self.merged
                    else "it was never merged into heart, so no model learned from it")
        parts = [f"{name} version(s) {', '.join(found)}" for name, found in
                 (("classifier", self.classifiers), ("synthesizer", self.synthesizers)) if found]
        text = f"{' and '.join(parts)} learned from it and are marked (never champion again)"
        if self.champion_classifier:
            text += (f"; the champion classifier v{self.champion_classifier} is replaced at the next "
                     "scheduled retrain, or now with --retrain-now")
        if self.champion_synthesizer:
            text += (f"; the champion synthesizer v{self.champion_synthesizer} is retired: daily adds no "
                     "synthetic rows until `heartrisk synth train` (or --retrain-now) fits a new one")
        return text


@dataclass(frozen=True)
class ErasedRow:
    """What the lineage rule needs of a row, read before it is deleted."""

    record_id: str
    event_time: datetime
    submitted_at: datetime | None = None
    #: The row's answers as stored in ``heart`` (one row): where a split by answers put it.
    answers: pd.DataFrame | None = None


def erased_row(settings: Settings, submission_id: str) -> ErasedRow | None:
    """The submission's row of ``heart`` (merge time) and its submission time; None if not merged."""
    record = user_record_id(submission_id)
    heart = open_group(settings, HEART)
    if not heart.exists():
        return None
    rows = heart.read(sources=["user"], columns=["record_id", "event_time", *FEATURE_NAMES])
    rows = rows[rows["record_id"] == record]
    if rows.empty:
        return None
    submitted = None
    shared = open_group(settings, HEART_USER)
    if shared.exists():
        found = shared.read(columns=["submission_id", "submitted_at"])
        found = found[found["submission_id"] == submission_id]
        submitted = None if found.empty else pd.Timestamp(found["submitted_at"].iloc[0]).to_pydatetime()
    return ErasedRow(record, pd.Timestamp(rows["event_time"].iloc[0]).to_pydatetime(), submitted,
                     rows[list(FEATURE_NAMES)].head(1).reset_index(drop=True))


def learned_from(row: ErasedRow, tags: dict[str, str], registered_at: datetime) -> bool:
    """The lineage rule for one version (versions without lineage tags: by registration time)."""
    lineage = Lineage.from_tags(tags)
    if lineage is None:
        return may_hold_untagged(row.event_time, registered_at)
    return lineage.may_hold(row.record_id, row.event_time, row.submitted_at, row.answers)


def affected_versions(settings: Settings, row: ErasedRow) -> Affected:
    """Every registered version that learned (or may have learned) from ``row``."""
    found_classifiers = tuple(v["version"] for v in reversed(classifiers.versions(settings))
                              if learned_from(row, v["tags"], v["created"]))
    found_synthesizers = tuple(v["version"] for v in synthesizers.synthesizer_versions(settings)
                               if learned_from(row, v["tags"], v["created"]))
    champion = classifiers.champion_version(settings)
    synth_champion = synthesizers.champion_version(settings)
    return Affected(
        classifiers=tuple(sorted(found_classifiers, key=int)), synthesizers=found_synthesizers,
        champion_classifier=champion if champion in found_classifiers else None,
        champion_synthesizer=synth_champion if synth_champion in found_synthesizers else None,
        merged=True)


def reach_models(settings: Settings, submission_id: str) -> Affected:
    """Find and mark every version that learned from the submission (call before deleting its row)."""
    row = erased_row(settings, submission_id)
    if row is None:
        return Affected()
    affected = affected_versions(settings, row)
    if affected.classifiers:
        classifiers.mark_classifiers(settings, list(affected.classifiers))
    if affected.synthesizers:
        synthesizers.mark_synthesizers(settings, list(affected.synthesizers))
    return affected


@dataclass
class Retrained:
    """What `--retrain-now` did: the jobs' one-line summaries, in order."""

    summaries: list[str] = field(default_factory=list)


def retrain_champions(settings: Settings, run: Callable[[str, Callable[[], Any]], Any]) -> Retrained:
    """Replace each champion that learned from erased rows now, with its own recipe, through the gates.

    ``run(job_name, body)`` runs a job under the home's job lock (the CLI passes ``run_job``)."""
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.jobs.train import TrainSettings, train
    from heartrisk.synth.fit import SynthSettings
    from heartrisk.tracking import ERASED_TAG

    done = Retrained()
    champion = classifiers.champion_entry(settings)
    if champion is not None and ERASED_TAG in champion["tags"]:
        quick = _run_data(settings, champion["run_id"])[1].get("quick") == "True"
        recipe = TrainSettings.for_quick() if quick else TrainSettings()
        done.summaries.append(run("train", lambda: train(settings, recipe)).summary)
    version = synthesizers.champion_version(settings)
    tags = synthesizers.version_tags(settings).get(version or "", {})
    if version is not None and ERASED_TAG in tags:
        params = _run_data(settings, synthesizers.run_id_of(settings, version))[0]
        # MLflow keeps parameters as text: an unset optional one (e.g. ``patience``) comes back "None"
        knobs = SynthSettings(**{k: v for k, v in params.items()
                                 if k in SynthSettings.model_fields and v != "None"})
        if params.get("epochs_auto") == "True":  # chosen for the rows of then: chosen again for today's
            knobs = knobs.model_copy(update={"epochs": None})
        done.summaries.append(run("synth", lambda: train_synthesizer(settings, knobs,
                                                                     show_progress=False)).summary)
    return done


def _run_data(settings: Settings, run_id: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """A run's parameters and tags (empty for a version without a run)."""
    from heartrisk.tracking import client

    if not run_id:
        return {}, {}
    data = client(settings).get_run(run_id).data
    return dict(data.params), dict(data.tags)
