"""Shared fixtures: every test gets its own home (Delta tables, MLflow SQLite) under tmp_path.

The data comes from the development copy named by HEARTRISK_CSV (the Makefile and .ci/run set it);
small samples of it are written by the fixtures themselves, so no extract is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.pipelines.ingest import ingest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV_CSV = REPO.parent / "shared" / "data" / "heart_2020_dev.csv.gz"


@pytest.fixture(scope="session")
def dev_csv() -> Path:
    """The development copy of the Kaggle file (287,693 rows)."""
    path = Path(os.environ.get("HEARTRISK_CSV") or DEFAULT_DEV_CSV)
    if not path.is_file():
        pytest.fail(f"dev data not found at {path}; set HEARTRISK_CSV")
    return path


@pytest.fixture(scope="session")
def dev_frame(dev_csv: Path) -> pd.DataFrame:
    """The dev file as raw strings (Kaggle columns), read once per session."""
    return pd.read_csv(dev_csv, dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def sample_csv(dev_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, stratified 6,000-row sample of the dev file, as a Kaggle-format CSV."""
    sample = dev_frame.groupby("HeartDisease", group_keys=False).sample(frac=6000 / len(dev_frame),
                                                                       random_state=7)
    path = tmp_path_factory.mktemp("data") / "heart_sample.csv"
    sample.sample(frac=1, random_state=7).to_csv(path, index=False)
    return path


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh, empty home of this test's own (env cleared of outside overrides)."""
    for var in ("HEARTRISK_STORE_URI", "MLFLOW_TRACKING_URI", "HEARTRISK_CSV"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HEARTRISK_HOME", str(home))
    return Settings(home=home)


@pytest.fixture
def ingested(settings: Settings, sample_csv: Path) -> Settings:
    """A home whose `heart` group holds the 6,000-row sample."""
    ingest(settings, sample_csv)
    return settings
