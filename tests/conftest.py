"""Shared fixtures: every test gets its own home (Delta tables, MLflow SQLite) under tmp_path.

The data comes from the development copy named by HEARTRISK_CSV (the Makefile and .ci/run set it);
small samples of it are written by the fixtures themselves, so no extract is committed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest

if TYPE_CHECKING:
    import httpx

    from heartrisk.web.server import BackgroundServer

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
def sample_rows(dev_frame: pd.DataFrame) -> pd.DataFrame:
    """A seeded, stratified 6,000-row sample of the dev file (what `trained` learns and tests on)."""
    return dev_frame.groupby("HeartDisease", group_keys=False).sample(frac=6000 / len(dev_frame),
                                                                      random_state=7)


@pytest.fixture(scope="session")
def sample_csv(sample_rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`sample_rows` as a Kaggle-format CSV."""
    sample = sample_rows
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


@pytest.fixture(scope="session")
def trained_home(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with the sample ingested and one `--quick` model trained and promoted (version "1").

    Built once per session (~40 s) and shared: do not write to it; use `trained` to get a copy."""
    from heartrisk.jobs.train import TrainSettings, train

    home_settings = Settings(home=tmp_path_factory.mktemp("trained") / "home")
    ingest(home_settings, sample_csv)
    train(home_settings, TrainSettings.for_quick())
    return home_settings


@pytest.fixture
def trained(trained_home: Settings, settings: Settings) -> Settings:
    """A fresh copy of `trained_home` as this test's own home: free to write (predictions, more
    versions). Existing versions' artifacts stay in the session home's folder (read from there)."""
    import shutil

    shutil.copytree(trained_home.home, settings.home)
    return settings


@pytest.fixture(scope="session")
def quick_synthesizer_home(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with the sample ingested and a `--quick` synthesizer registered as champion (version
    "1"). Built once per session (~20 s) and shared: do not write to it; use `quick_synthesizer`."""
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.synth.fit import SynthSettings

    home_settings = Settings(home=tmp_path_factory.mktemp("synth") / "home")
    ingest(home_settings, sample_csv)
    train_synthesizer(home_settings, SynthSettings.quick(), show_progress=False)
    return home_settings


@pytest.fixture
def quick_synthesizer(quick_synthesizer_home: Settings, settings: Settings) -> Settings:
    """A fresh copy of `quick_synthesizer_home` as this test's own home (free to write). The
    synthesizer's files stay in the session home's folder: never damage them from a test."""
    import shutil

    shutil.copytree(quick_synthesizer_home.home, settings.home)
    return settings


# ---------------------------------------------------------------------------------------- web tests
@pytest.fixture(scope="module")
def web_home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Settings:
    """A private copy of the trained home per test module: web tests store submissions in it."""
    from support.web import copy_home

    return copy_home(trained_home, tmp_path_factory.mktemp(request.module.__name__) / "home")


@pytest.fixture(scope="module")
def web_server(web_home: Settings) -> Iterator[BackgroundServer]:
    """The real app on 127.0.0.1 (a free port) over :func:`web_home`, for the whole module."""
    from heartrisk.web.server import BackgroundServer

    with BackgroundServer(web_home) as running:
        yield running


@pytest.fixture(scope="module")
def web_client(web_server: BackgroundServer) -> Iterator[httpx.Client]:
    """An HTTP client of :func:`web_server`."""
    import httpx

    with httpx.Client(base_url=web_server.url, timeout=30) as http:
        yield http
