"""`train` on one machine while `forget` runs on another (two homes sharing one store).

Train reads ``heart`` more than once (the profile split, the record-id split it reports beside, the
user rows of its lineage). An attack helper saw `train --quick` die with a raw ``TableNotFoundError: No
files in log segment`` (1 of 3 runs): the second read went back to the version the first had pinned,
and the other machine's forget had purged it meanwhile. The race is made to happen every time here:
machine B's real forget runs right after machine A's first split is read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.train import TrainSettings, train
from heartrisk.model import registry
from heartrisk.store.groups import HEART, open_group
from heartrisk.store.table import StoreError
from heartrisk.store.view import FeatureView

#: The smallest search that still trains, refits and registers (a few seconds).
TINY = TrainSettings.for_quick(families=("logreg",), treatments=("none",), max_train_rows=400,
                               search_rows=400, bootstrap=20, shap_rows=50, coverage_records=20)


def machine(tmp_path: Path, name: str) -> Settings:
    """A home of its own (its own locks, its own MLflow) on the store every machine shares."""
    return Settings(home=tmp_path / name, store_uri=str(tmp_path / "shared-store"))


def with_shared_rows(settings: Settings, sample_csv: Path, count: int = 5) -> list[str]:
    """Ingest the sample and merge ``count`` user rows into ``heart`` (copies of Kaggle answers, as
    the daily merge stores shared submissions); returns their record ids."""
    ingest(settings, sample_csv)
    heart = open_group(settings, HEART)
    users = heart.read().head(count).reset_index(drop=True)
    users["record_id"] = [f"user:{uuid.uuid4()}" for _ in range(count)]
    users["source"] = "user"
    heart.insert(users)
    return list(users["record_id"])


def forget_after_the_first_split(other: Settings, record_id: str,
                                 raced: list[str]) -> Callable[..., object]:
    """``FeatureView.train_test_split`` that lets machine ``other`` forget ``record_id`` (delete and
    purge the history, the real thing) right after this machine's first split was read."""
    split = FeatureView.train_test_split

    def split_then_forget(self: FeatureView, *args: object, **kwargs: object) -> object:
        result = split(self, *args, **kwargs)
        if not raced:
            raced.append("raced")
            open_group(other, HEART).forget_rows(f"record_id = '{record_id}'")
        return result

    return split_then_forget


def test_train_while_another_machine_forgets_trains_on_the_new_version(
        tmp_path: Path, sample_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    forgotten = with_shared_rows(a, sample_csv)[0]
    raced: list[str] = []
    monkeypatch.setattr(FeatureView, "train_test_split", forget_after_the_first_split(b, forgotten, raced))
    result = train(a, TINY)
    assert raced == ["raced"]
    after_forget = open_group(b, HEART).version()
    assert result.split["table_version"] == after_forget
    assert result.record_split_metrics  # the record-id split was read too, at the same version
    tags = next(v["tags"] for v in registry.versions(a) if v["version"] == result.version)
    assert tags["lineage_table_version"] == str(after_forget)
    assert int(tags["lineage_user_rows"]) <= 4  # the forgotten row is not among them


def test_a_purged_version_is_a_clear_store_error(tmp_path: Path) -> None:
    """Asked for a version whose history a forget purged, a reader gets one line saying so."""
    from store.test_store import rows

    a, b = machine(tmp_path, "a"), machine(tmp_path, "b")
    heart = open_group(a, HEART)
    heart.insert(rows(range(0, 50)))
    pinned = heart.insert(rows(range(50, 100))).version
    open_group(b, HEART).forget_rows("record_id = 'r3'")
    with pytest.raises(StoreError, match=rf"version {pinned} of heart_v1 can no longer be read") as info:
        heart.read(version=pinned)
    assert "\n" not in str(info.value)
