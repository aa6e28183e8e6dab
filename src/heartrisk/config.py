"""Settings: read once from the environment, validated, then passed in (never set at import time).

Every path the system uses hangs off one home folder, so a test, a laptop and a server differ only in
``HEARTRISK_HOME`` (and, at scale, ``HEARTRISK_STORE_URI`` and ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from heartrisk.clock import as_utc
from heartrisk.errors import UserError

DEFAULT_HOME = Path(".heartrisk")

#: Environment variables the settings read; the README's configuration table lists the same.
ENV_VARS: dict[str, str] = {
    "home": "HEARTRISK_HOME",
    "csv": "HEARTRISK_CSV",
    "store_uri": "HEARTRISK_STORE_URI",
    "mlflow_uri": "MLFLOW_TRACKING_URI",
    "synth_submissions_from": "HEARTRISK_SYNTH_SUBMISSIONS_FROM",
    "lease_ttl_s": "HEARTRISK_LEASE_TTL",
    "lease_wait_s": "HEARTRISK_LEASE_WAIT",
    "single_writer": "HEARTRISK_SINGLE_WRITER",
    "engine": "HEARTRISK_ENGINE",
    "ray_address": "HEARTRISK_RAY_ADDRESS",
    "engine_batch_rows": "HEARTRISK_ENGINE_BATCH_ROWS",
    "engine_bucket_rows": "HEARTRISK_ENGINE_BUCKET_ROWS",
    "train_read_rows": "HEARTRISK_TRAIN_READ_ROWS",
}


class ConfigError(UserError, ValueError):
    """A setting is wrong; the message names the environment variable and what it expects."""


SettingsModel = TypeVar("SettingsModel", bound=BaseModel)


def settings_from_env(model: type[SettingsModel], env_vars: Mapping[str, str], what: str,
                      env: Mapping[str, str] | None = None,
                      overrides: Mapping[str, object] | None = None) -> SettingsModel:
    """Build ``model`` from the environment variables ``env_vars`` names (field -> variable), with
    options given on the command line (``overrides``, None = not given) winning.

    Shared by every settings model so a bad value always fails at start with the same kind of message:
    the variable's name and what is wrong with it (``what`` says which settings they are).
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {k: env[v] for k, v in env_vars.items() if env.get(v)}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model(**values)
    except ValidationError as exc:
        lines = [f"{env_vars.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" if e["loc"] else e["msg"]
                 for e in exc.errors()]
        raise ConfigError(f"invalid {what}: " + "; ".join(lines)) from None


class Settings(BaseModel):
    """Where things live. ``extra="forbid"``: a misspelt setting fails at start, not later."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default=DEFAULT_HOME, description="folder holding everything")
    csv: Path | None = Field(default=None, description="local copy of the Kaggle CSV")
    store_uri: str | None = Field(default=None, description="feature store root (path or s3://)")
    mlflow_uri: str | None = Field(default=None, description="MLflow tracking URI")
    synth_submissions_from: datetime | None = Field(default=None, description=(
        "consent scope: submissions shared at or after this time also train the synthesizer, and the "
        "form's consent text says so; unset (the default), submissions train and check the classifier "
        "only. A time, not a switch: people who shared before the text changed agreed to less"))
    lease_ttl_s: float = Field(default=60.0, ge=5, le=3600, description=(
        "seconds a job's lease lives without renewal: how long a crashed run blocks other machines"))
    lease_wait_s: float = Field(default=0.0, ge=0, description=(
        "seconds a job waits for another machine's run of the same job (0: exit at once, naming it)"))
    single_writer: bool = Field(default=False, description=(
        "only one process ever writes: allow a store that ignores conditional writes"))
    engine: Literal["local", "daft"] | None = Field(default=None, description=(
        "what runs the batch jobs (infer, the prediction aggregates): this process (local) or Daft, "
        "on this machine or a Ray cluster; default: daft when ray_address is set, else local"))
    ray_address: str | None = Field(default=None, description=(
        "Ray cluster the daft engine runs on ('ray://head:10001', 'head:6379' or 'auto'); unset: "
        "Daft's native runner in this process"))
    engine_batch_rows: int = Field(default=65_536, ge=1_000, le=10_000_000, description=(
        "rows a daft worker scores at once: what bounds its memory"))
    engine_bucket_rows: int = Field(default=500_000, ge=1_000, le=100_000_000, description=(
        "record ids the daft engine sorts out at once (one row per id, the ids already scored "
        "left out): the window is split into hash buckets of about this many rows"))
    train_read_rows: int | None = Field(default=None, ge=1_000, description=(
        "training reads a seeded sample of about this many rows when the table holds more"))

    @field_validator("store_uri")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value and "://" in value and not value.startswith(("s3://", "s3a://", "file://")):
            raise ValueError(f"{value!r}: use a local path, file://… or s3://…")
        return value

    @field_validator("synth_submissions_from")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @model_validator(mode="after")
    def _engine_reaches_ray(self) -> Settings:
        if self.engine == "local" and self.ray_address:
            raise ValueError("HEARTRISK_RAY_ADDRESS is set but HEARTRISK_ENGINE is local: the local engine "
                             "never uses Ray; use the daft engine or unset the address")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``HEARTRISK_*`` variables; CLI options come in as overrides."""
        return settings_from_env(cls, ENV_VARS, "settings", env, overrides)

    @property
    def batch_engine(self) -> Literal["local", "daft"]:
        """The engine the batch jobs use: one setting (a Ray address) is enough to go distributed."""
        if self.engine is not None:
            return self.engine
        return "daft" if self.ray_address else "local"

    # Everything below derives from the home unless set explicitly.
    @property
    def store_root(self) -> str:
        """Root of the Delta tables: ``<home>/store`` unless ``HEARTRISK_STORE_URI`` says otherwise."""
        if self.store_uri:
            return self.store_uri.removeprefix("file://").rstrip("/")
        return str((self.home / "store").absolute())

    @property
    def is_remote_store(self) -> bool:
        return "://" in self.store_root

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{(self.home / 'mlflow.db').absolute()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def experiment_artifact_location(self) -> str | None:
        """Where new MLflow experiments keep artifacts: under the home for a local database; left to
        the tracking server (None) when there is one, so every machine can load the models."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        return self.artifacts_dir.absolute().as_uri()

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    def ensure_home(self) -> None:
        """Create the home's folders; a home that is a file gets a clear error."""
        if self.home.exists() and not self.home.is_dir():
            raise ConfigError(f"HEARTRISK_HOME: {self.home} exists and is not a folder")
        for path in (self.home, self.locks_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True)
