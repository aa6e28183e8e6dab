"""Erasure that reaches the models: which registered classifier and synthesizer versions learned from a
submission `heartrisk forget` erases, marking them, and replacing the champions among them.

`heartrisk forget` calls :func:`reach_models` *before* it deletes the row (the rule needs the row's
merge time and submission time, :mod:`heartrisk.store.lineage`), so a forget cut short and run again
marks the same versions (the mark is idempotent) and then deletes. It reaches them once more *after*
deleting and purging, with the row it read first, and marks the versions registered meanwhile
(:func:`after_delete`). A training run on another machine guards its own registration
(:class:`HeartWatch`): the two together leave no order of events in which a version that read the
row is registered unmarked. A marked version (tag ``learned_from_erased_rows``):

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from heartrisk import tracking
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.model import registry as classifiers
from heartrisk.model.gate import GateDecision as ClassifierDecision
from heartrisk.store.groups import HEART, HEART_USER, open_group, user_record_id
from heartrisk.store.lineage import Lineage, may_hold_untagged
from heartrisk.synth import registry as synthesizers
from heartrisk.synth.gate import GateDecision as SynthDecision
from heartrisk.tracking import ERASED_TAG, TrackedRun

#: Why a model that may hold a row a `forget` erased while it trained is kept out (its gate decision,
#: one line).
HELD_BACK = ("kept out: a `forget` erased a row this model may have learned from while it trained; it is "
             "marked (never champion): train again")
Decision = TypeVar("Decision", ClassifierDecision, SynthDecision)


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

    def joined(self, later: Affected) -> Affected:
        """This reach and a later one (forget's second): every version either found; the champions as
        the later one saw them (a clean retrain may have replaced one in between)."""
        return Affected(
            classifiers=tuple(sorted(set(self.classifiers) | set(later.classifiers), key=int)),
            synthesizers=tuple(sorted(set(self.synthesizers) | set(later.synthesizers), key=int)),
            champion_classifier=later.champion_classifier, champion_synthesizer=later.champion_synthesizer,
            merged=self.merged or later.merged)

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
    #: A ``heart`` version without the row (known once it is deleted): a version that read this one
    #: or a later one cannot have learned from it.
    gone_from: int | None = None


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
    if row.gone_from is not None and lineage.group == HEART.table_name \
            and lineage.table_version >= row.gone_from:
        return False  # read after the delete
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


def reach_models(settings: Settings, row: ErasedRow | None, reached: Affected | None = None) -> Affected:
    """Find and mark every version that learned from ``row`` (None: never merged into ``heart``).

    Versions an earlier pass ``reached`` are not marked again (their tag keeps when they were); the
    answer is both passes' (:meth:`Affected.joined`)."""
    reached = reached or Affected()
    if row is None:
        return reached
    affected = affected_versions(settings, row)
    new_classifiers = [v for v in affected.classifiers if v not in reached.classifiers]
    new_synthesizers = [v for v in affected.synthesizers if v not in reached.synthesizers]
    if new_classifiers:
        classifiers.mark_classifiers(settings, new_classifiers)
    if new_synthesizers:
        synthesizers.mark_synthesizers(settings, new_synthesizers)
    return reached.joined(affected)


def after_delete(settings: Settings, row: ErasedRow | None) -> ErasedRow | None:
    """``row`` for forget's second reach, once it is deleted from ``heart`` and the history purged.

    Why a second reach: a training run on another machine that read ``heart`` before the delete but
    registered after the first reach learned from the row, and the first reach could not see it. Any
    such version registered before this reach is found here (the lineage rule, with the row read
    before the delete); one registered after it registers after the purge too, and its own run marks
    it (:class:`HeartWatch`). A version that read ``heart`` at the version of now or later cannot hold
    the row (``gone_from``): a clean retrain that finished in between is left alone."""
    if row is None:
        return None
    return replace(row, gone_from=open_group(settings, HEART).version())


@dataclass(frozen=True)
class HeartWatch:
    """The user rows on a training run's training side, to tell at registration whether a `forget`
    (on any machine) erased one of them since the run read ``heart``: then the model may hold it.

    The check is whether one of those rows has left the latest ``heart``. Not whether ``heart`` was
    purged: forget purges on every run (also for a submission never merged, a row on the test side,
    a re-run of a finished forget), and a clean model marked for that could never be champion; and
    forget deletes the row before it purges, so a run checking between the two would miss a purge
    (the attack helper promoted such a model in 1 of 7 races).

    The orders of events, with forget's first reach R1, its delete D and purge P, its second reach R2
    (:func:`after_delete`, after P), for a run whose training side held the row:

    * registered before R1 or R2: that reach marks it;
    * D before the check ahead of registering: registered already marked, never champion;
    * D before the check right after registering (the model is registered unpromoted, then checked,
      then promoted): marked there, never champion; every registration after R2 is in this case;
    * D after that check, and R1 or R2 marks it before the promotion: the promotion refuses it and the
      run keeps it out (:func:`register_unless_forgotten`), never champion;
    * D in the moment between that check and the promotion, R2 after the promotion: promoted, then
      marked by R2, as a champion that learned from the row is (replaced at the next retrain; a
      synthesizer is retired)."""

    settings: Settings
    #: Record ids of the user rows on the model's training side (those its lineage counts): a forget
    #: erases a user row, so a model without any holds none.
    user_records: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: Settings, train_ids: pd.Series) -> HeartWatch:
        """The watch of a run that trains on ``train_ids``."""
        return cls(settings, frozenset(train_ids[train_ids.str.startswith("user:")]))

    def forgotten(self) -> bool:
        """Whether one of the model's training-side user rows is no longer in the latest ``heart``
        (the read is retried if a purge on another machine removes files under it)."""
        if not self.user_records:
            return False
        heart = open_group(self.settings, HEART)
        left = heart.reading(lambda: heart.read_arrow(version=heart.version(), sources=["user"],
                                                      columns=["record_id"]))
        return not self.user_records <= set(left.column("record_id").to_pylist())


def held_back(decision: Decision) -> Decision:
    """The gate's ``decision`` turned into "kept out", saying why in one line (:data:`HELD_BACK`)."""
    return replace(decision, promoted=False, text=f"{HELD_BACK} (the gate said {decision.text!r})")


@dataclass(frozen=True)
class RegistrySteps:
    """How one kind of model (classifier or synthesizer) is registered, marked and promoted, for
    :func:`register_unless_forgotten`."""

    model_name: str
    decision_tag: str
    #: ``(decision, erased)`` -> the new version; ``erased``: tagged as having learned from erased rows.
    register: Callable[[Any, bool], str]
    mark: Callable[[str], None]
    #: ``(version, reason)``; raises :attr:`refusal` for a version a `forget` marked.
    promote: Callable[[str, str], None]
    refusal: type[Exception]


def register_unless_forgotten(settings: Settings, watch: HeartWatch, run: TrackedRun, decision: Decision,
                              steps: RegistrySteps) -> tuple[str, Decision]:
    """Register a model and promote it as the gate decided, unless a `forget` erased a row of its
    training side since it was read: then it is marked and kept out. Returns the version and the
    decision.

    Registered unpromoted, checked, then promoted: a check before the registration alone would miss a
    forget during the seconds the model's files take to log. A forget whose reach marks the version
    after that check makes the promotion refuse it: kept out too, not a failed job (the orders of
    events: :class:`HeartWatch`)."""
    if watch.forgotten():
        decision = held_back(decision)
        run.set_tags({"decision": decision.text})
        return steps.register(decision, True), decision
    version = steps.register(replace(decision, promoted=False), False)
    marked = watch.forgotten()
    if marked:
        steps.mark(version)
    elif decision.promoted:
        marked = not promoted_unless_marked(settings, steps, version, decision.text)
    if marked:
        decision = held_back(decision)
        run.set_tags({"decision": decision.text})
        tracking.client(settings).set_model_version_tag(steps.model_name, version, steps.decision_tag,
                                                        decision.text)
    return version, decision


def promoted_unless_marked(settings: Settings, steps: RegistrySteps, version: str, reason: str) -> bool:
    """Promote ``version``; False if a `forget` marked it since the check (the promotion refuses a
    marked version)."""
    try:
        steps.promote(version, reason)
    except steps.refusal:
        tags = tracking.client(settings).get_model_version(steps.model_name, version).tags or {}
        if ERASED_TAG not in tags:
            raise
        return False
    return True


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
