"""Erasure across machines: `forget` on machine B while machine A trains (two homes, one store, one
registry).

`forget` marks the registered versions that learned from the row (its first reach), then deletes the
row and purges the history. A training run on another machine that read ``heart`` before the delete
but registers after that first reach learned from the row and was never marked: it could even be
champion. And forget purges heart on every run: a run whose training side holds no erased row must not
be held back by it. Each race is made to happen every time here by letting machine B's real forget
run at the exact moment (a wrapped function of A's run, or of B's forget)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.jobs import daily as daily_job
from heartrisk.jobs import forget as forget_job
from heartrisk.jobs import synth_train as synth_job
from heartrisk.jobs import train as train_job
from heartrisk.jobs.daily import run_daily
from heartrisk.jobs.forget import forget
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.synth_train import train_synthesizer
from heartrisk.jobs.train import TrainSettings, train
from heartrisk.model.registry import MODEL_NAME, champion_version
from heartrisk.sources.submissions import insert_submissions, submission_row
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.table import FeatureGroup
from heartrisk.store.view import hash_fraction, profile_key
from heartrisk.synth.fit import SynthSettings
from heartrisk.synth.registry import REGISTERED_MODEL
from heartrisk.synth.registry import champion_version as synth_champion
from heartrisk.tracking import ERASED_TAG
from heartrisk.tracking import client as registry_client

#: The smallest search that still trains, refits and registers (a few seconds).
TINY = TrainSettings.for_quick(families=("logreg",), treatments=("none",), max_train_rows=400,
                               search_rows=400, bootstrap=20, shap_rows=50, coverage_records=20)
HELD_BACK = "a `forget` erased a row this model may have learned from while it trained"


def machines(tmp_path: Path, **a_settings: Any) -> tuple[Settings, Settings]:
    """Two homes (own locks, own caches) on one store and one registry; ``a_settings`` for A."""
    a = Settings(home=tmp_path / "a", store_uri=str(tmp_path / "shared-store"), **a_settings)
    return a, Settings(home=tmp_path / "b", store_uri=a.store_uri, mlflow_uri=a.tracking_uri)


def with_shared_rows(settings: Settings, sample_csv: Path, count: int = 8) -> list[str]:
    """Ingest the sample and share ``count`` submissions (copies of Kaggle answers), merged into
    ``heart`` as the daily merge stores them; returns the submission ids of those on the training
    side of the split by answers (the ones a model learns from)."""
    ingest(settings, sample_csv)
    ids, users = shared(settings, open_group(settings, HEART).read().head(count))
    return [i for i, kept in zip(ids, ~on_test_side(users), strict=True) if kept]


def shared(settings: Settings, answers: pd.DataFrame, merged: bool = True) -> tuple[list[str], pd.DataFrame]:
    """Share ``answers`` (rows of ``heart``) as submissions, merged into ``heart`` unless ``merged``
    is False (then pending); returns their ids and their ``heart`` rows."""
    users = answers.reset_index(drop=True)
    rows = pd.concat([submission_row(settings, row[list(FEATURE_NAMES)].to_dict(), bool(row[LABEL.name]))
                      for _, row in users.iterrows()], ignore_index=True)
    insert_submissions(settings, rows)
    ids = list(rows["submission_id"])
    users["record_id"] = [f"user:{i}" for i in ids]
    users["source"] = "user"
    if merged:
        open_group(settings, HEART).insert(users)
    return ids, users


def on_test_side(rows: pd.DataFrame) -> np.ndarray:
    """Where :data:`TINY`'s split by answers puts each row."""
    return hash_fraction(profile_key(rows[list(FEATURE_NAMES)]), TINY.seed) < TINY.test_size


def tags_of(settings: Settings, model: str, version: str) -> dict[str, str]:
    return dict(registry_client(settings).get_model_version(model, version).tags)


def forget_first(other: Settings, submission_id: str, func: Callable[..., Any],
                 raced: list[Any]) -> Callable[..., Any]:
    """``func`` that lets machine ``other`` forget the submission (the real job) just before it runs."""

    def forgotten_then(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(forget(other, submission_id))
        return func(*args, **kwargs)

    return forgotten_then


def forget_after(other: Settings, submission_id: str, func: Callable[..., Any],
                 raced: list[Any]) -> Callable[..., Any]:
    """``func`` that lets machine ``other`` forget the submission right after it returned."""

    def then_forgotten(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if not raced:
            raced.append(forget(other, submission_id))
        return result

    return then_forgotten


@pytest.mark.parametrize("moment", ["after the read", "before registering"])
def test_a_model_that_read_a_row_forgotten_before_it_registered_is_marked_and_never_champion(
        moment: str, tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: A's version registered unmarked and, with no champion yet, became champion."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    raced: list[Any] = []
    if moment == "after the read":
        monkeypatch.setattr(train_job, "read_heart", forget_after(b, victim, train_job.read_heart, raced))
    else:
        monkeypatch.setattr(train_job, "register_model",
                            forget_first(b, victim, train_job.register_model, raced))
    result = train(a, TINY)
    assert len(raced) == 1 and raced[0].removed["heart_v1"] == 1
    tags = tags_of(a, MODEL_NAME, result.version)
    assert int(tags["lineage_user_rows"]) >= 1  # it did learn from user rows, the forgotten one among them
    assert ERASED_TAG in tags
    assert not result.promoted and champion_version(a) is None
    assert HELD_BACK in result.decision and "\n" not in result.decision
    assert tags["decision"] == result.decision
    again = forget(b, victim)  # a re-run finds nothing left and changes no mark
    assert not again.models.any and tags_of(a, MODEL_NAME, result.version) == tags


def test_a_model_checked_between_forgets_delete_and_its_purge_is_marked_and_never_champion(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B's forget has deleted the row from heart and not yet purged it while A registers, checks
    and promotes. The attack helper found this: the check looked for rows only after a purge, so A's
    version became champion unmarked (1 of 7 CLI races; every time with the purge held)."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    deleted, go_on = threading.Event(), threading.Event()
    purge = FeatureGroup._purge

    def held_purge(self: FeatureGroup) -> Any:
        if self.spec.table_name == HEART.table_name and threading.current_thread().name == "B":
            deleted.set()
            go_on.wait(60)
        return purge(self)

    monkeypatch.setattr(FeatureGroup, "_purge", held_purge)
    raced: dict[str, Any] = {}
    machine_b = threading.Thread(target=lambda: raced.setdefault("forget", forget(b, victim)), name="B")
    register = train_job.register_model

    def after_the_delete(*args: Any, **kwargs: Any) -> Any:
        machine_b.start()
        assert deleted.wait(60)  # B deleted heart's row; its purge waits
        return register(*args, **kwargs)

    monkeypatch.setattr(train_job, "register_model", after_the_delete)
    try:
        result = train(a, TINY)
    finally:
        go_on.set()
        machine_b.join(60)
    assert raced["forget"].removed["heart_v1"] == 1
    assert ERASED_TAG in tags_of(a, MODEL_NAME, result.version)
    assert not result.promoted and champion_version(a) is None and HELD_BACK in result.decision


def test_forget_marks_a_version_registered_between_its_first_reach_and_its_purge(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: version 2 (trained on the row while forget was already past its first reach) stayed
    unmarked, and champion."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    first = train(a, TINY)  # learned from the row: the first reach marks it
    assert first.version == "1"
    first_mark: list[str] = []
    delete_and_purge = FeatureGroup.forget_rows

    def train_then_delete(group: FeatureGroup, predicate: str) -> tuple[int, int]:
        if not first_mark:  # forget's first table: its first reach is done, nothing purged yet
            first_mark.append(tags_of(a, MODEL_NAME, "1")[ERASED_TAG])
            assert train(a, TINY).version == "2"
        return delete_and_purge(group, predicate)

    monkeypatch.setattr(FeatureGroup, "forget_rows", train_then_delete)
    result = forget(b, victim)
    assert result.removed["heart_v1"] == 1
    assert result.models.classifiers == ("1", "2")
    assert ERASED_TAG in tags_of(a, MODEL_NAME, "2")
    assert tags_of(a, MODEL_NAME, "1")[ERASED_TAG] == first_mark[0]  # marked once, not stamped again
    # v2 (same rows, same recipe) passed the gate over the marked champion v1; the second reach
    # found it champion
    assert champion_version(a) == "2" and result.models.champion_classifier == "2"
    assert "champion classifier v2 is replaced" in result.message


def test_forget_does_not_mark_a_version_that_read_heart_after_its_purge(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model trained after the row was deleted, registered before forget's second reach, never held
    it: the second reach leaves it alone (the lineage rule alone would say "may hold": other user
    rows merged at the same time are on its training side)."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    scrub = forget_job.scrub_reference_samples
    trained: list[str] = []

    def train_then_scrub(settings: Settings, record_id: str) -> int:
        trained.append(train(a, TINY).version)  # every table is deleted from and purged by now
        return scrub(settings, record_id)

    monkeypatch.setattr(forget_job, "scrub_reference_samples", train_then_scrub)
    result = forget(b, victim)
    assert trained == ["1"] and result.removed["heart_v1"] == 1
    tags = tags_of(a, MODEL_NAME, "1")
    assert int(tags["lineage_user_rows"]) >= 1
    assert ERASED_TAG not in tags and not result.models.any
    assert champion_version(a) == "1"


def test_a_synthesizer_fitted_on_a_row_forgotten_before_it_registered_is_marked_and_never_champion(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race for `synth train` (submissions consented to, so the fit reads user rows).
    Before: the version registered unmarked and became champion."""
    a, b = machines(tmp_path, synth_submissions_from=datetime(2000, 1, 1, tzinfo=UTC))
    victim = with_shared_rows(a, sample_csv)[0]
    raced: list[Any] = []
    monkeypatch.setattr(synth_job, "register_synthesizer",
                        forget_first(b, victim, synth_job.register_synthesizer, raced))
    result = train_synthesizer(a, SynthSettings.quick(epochs=1), show_progress=False)
    assert len(raced) == 1 and raced[0].removed["heart_v1"] == 1
    tags = tags_of(a, REGISTERED_MODEL, result.version)
    assert int(tags["lineage_user_rows"]) >= 1
    assert ERASED_TAG in tags
    assert not result.promoted and synth_champion(a) is None
    assert HELD_BACK in result.decision and "\n" not in result.decision


def test_a_synthesizer_fitted_without_user_rows_is_not_held_back_by_a_forget(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge while fitting holds back only a fit that read user rows (a forget erases those alone):
    the default fit leaves shared submissions out."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    raced: list[Any] = []
    monkeypatch.setattr(synth_job, "register_synthesizer",
                        forget_first(b, victim, synth_job.register_synthesizer, raced))
    result = train_synthesizer(a, SynthSettings.quick(epochs=1), show_progress=False)
    assert len(raced) == 1
    tags = tags_of(a, REGISTERED_MODEL, result.version)
    assert tags["lineage_user_rows"] == "0" and ERASED_TAG not in tags
    assert HELD_BACK not in result.decision
    assert result.promoted == (synth_champion(a) == result.version)


@pytest.mark.parametrize(("kind", "moment"), [("a pending submission", "after the read"),
                                              ("a row on the test side", "before registering")])
def test_a_forget_of_a_row_the_model_did_not_train_on_does_not_hold_it_back(
        kind: str, moment: str, tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forget` purges heart on every run, also for a submission never merged or a row on the test
    side. Before: A's version (which read user rows, none of them erased) was held back and marked
    for good all the same, never champion."""
    a, b = machines(tmp_path)
    with_shared_rows(a, sample_csv)  # A learns from user rows
    kaggle = open_group(a, HEART).read(sources=["kaggle"])
    if kind == "a pending submission":
        (other,), _ = shared(a, kaggle.head(1), merged=False)
    else:
        (other,), _ = shared(a, kaggle[on_test_side(kaggle)].head(1))
    raced: list[Any] = []
    if moment == "after the read":
        monkeypatch.setattr(train_job, "read_heart", forget_after(b, other, train_job.read_heart, raced))
    else:
        monkeypatch.setattr(train_job, "register_model",
                            forget_first(b, other, train_job.register_model, raced))
    result = train(a, TINY)
    assert len(raced) == 1 and raced[0].removed["heart_v1"] == (kind == "a row on the test side")
    assert raced[0].removed["heart_user_v1"] == 1 and not raced[0].models.any
    tags = tags_of(a, MODEL_NAME, result.version)
    assert int(tags["lineage_user_rows"]) >= 1 and ERASED_TAG not in tags
    assert HELD_BACK not in result.decision
    assert result.promoted and champion_version(a) == result.version  # no champion yet: the gate promotes


def test_a_forget_of_a_pending_submission_does_not_hold_back_a_synthesizer(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for `synth train` (submissions consented to, so the fit reads user rows). Before: held
    back and marked."""
    a, b = machines(tmp_path, synth_submissions_from=datetime(2000, 1, 1, tzinfo=UTC))
    with_shared_rows(a, sample_csv)
    (pending,), _ = shared(a, open_group(a, HEART).read(sources=["kaggle"]).head(1), merged=False)
    raced: list[Any] = []
    monkeypatch.setattr(synth_job, "register_synthesizer",
                        forget_first(b, pending, synth_job.register_synthesizer, raced))
    result = train_synthesizer(a, SynthSettings.quick(epochs=1), show_progress=False)
    assert len(raced) == 1 and raced[0].removed["heart_user_v1"] == 1 and not raced[0].models.any
    tags = tags_of(a, REGISTERED_MODEL, result.version)
    assert int(tags["lineage_user_rows"]) >= 1 and ERASED_TAG not in tags
    assert HELD_BACK not in result.decision
    assert result.promoted == result.decision.startswith("promoted") == (synth_champion(a) == result.version)


def test_a_classifier_marked_between_its_check_and_its_promotion_is_kept_out(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B's forget marks A's version (registered unpromoted, checked) just before A promotes it.
    Before: promote refused the marked version and train failed after registering (RegistryError)."""
    a, b = machines(tmp_path)
    victim = with_shared_rows(a, sample_csv)[0]
    raced: list[Any] = []
    monkeypatch.setattr(train_job, "promote", forget_first(b, victim, train_job.promote, raced))
    result = train(a, TINY)
    assert len(raced) == 1 and raced[0].models.classifiers == (result.version,)
    assert not result.promoted and champion_version(a) is None
    assert HELD_BACK in result.decision and "\n" not in result.decision
    tags = tags_of(a, MODEL_NAME, result.version)
    assert ERASED_TAG in tags and tags["decision"] == result.decision
    assert registry_client(a).get_run(result.run_id).data.tags["decision"] == result.decision


def test_a_synthesizer_marked_between_its_check_and_its_promotion_is_kept_out(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for `synth train`. Before: promote_synthesizer refused it (PrivacyRiskError) and the
    job failed after registering."""
    a, b = machines(tmp_path, synth_submissions_from=datetime(2000, 1, 1, tzinfo=UTC))
    victim = with_shared_rows(a, sample_csv)[0]
    raced: list[Any] = []
    monkeypatch.setattr(synth_job, "promote_synthesizer",
                        forget_first(b, victim, synth_job.promote_synthesizer, raced))
    result = train_synthesizer(a, SynthSettings.quick(epochs=1), show_progress=False)
    assert raced, f"the gate kept the fit out, so nothing raced its promotion: {result.decision}"
    assert raced[0].models.synthesizers == (result.version,)
    assert not result.promoted and synth_champion(a) is None
    assert HELD_BACK in result.decision and "\n" not in result.decision
    tags = tags_of(a, REGISTERED_MODEL, result.version)
    assert ERASED_TAG in tags and tags["decision"] == result.decision
    assert registry_client(a).get_run(result.run_id).data.tags["decision"] == result.decision


def test_a_second_forget_keeps_the_first_mark(tmp_path: Path, sample_csv: Path) -> None:
    """A version that learned from two forgotten rows keeps the time of its first mark (the tag says
    when it was marked). Before: every reach that found it stamped it again."""
    a, _ = machines(tmp_path)
    first, second = with_shared_rows(a, sample_csv)[:2]
    version = train(a, TINY).version
    assert forget(a, first).models.classifiers == (version,)
    earlier = "2000-01-01T00:00:00+00:00: trained on a row that `heartrisk forget` erased"
    registry_client(a).set_model_version_tag(MODEL_NAME, version, ERASED_TAG, earlier)  # a mark of long ago
    assert forget(a, second).models.classifiers == (version,)  # it learned from this one too
    assert tags_of(a, MODEL_NAME, version)[ERASED_TAG] == earlier


def test_a_forget_between_the_daily_merges_read_and_its_insert_is_not_undone(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine B's daily read the pending submission; machine A forgot it (no table held it in
    ``heart`` yet, so forget found nothing there to remove); then B's insert put it into ``heart``.
    Before: forget said the row was gone, and ``heart`` held it for the next train (an attack helper's
    find, made to happen here every time)."""
    a, b = machines(tmp_path)
    ingest(a, sample_csv)
    (victim,), _ = shared(a, open_group(a, HEART).read().head(1), merged=False)
    raced: list[Any] = []
    monkeypatch.setattr(daily_job, "_write", forget_first(a, victim, daily_job._write, raced))
    result = run_daily(b, synthetic=0)
    assert len(raced) == 1 and raced[0].removed["heart_user_v1"] == 1
    assert result.forgotten_meanwhile == 1 and "forgotten while it ran" in result.summary
    for machine in (a, b):
        heart = open_group(machine, HEART).read(sources=["user"], columns=["record_id"])
        assert f"user:{victim}" not in set(heart["record_id"])
    assert run_daily(a, synthetic=0).user_rows == 0  # and nothing brings it back
