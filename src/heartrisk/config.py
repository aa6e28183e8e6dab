"""Settings: read once from the environment, validated, then passed in (never set at import time).

Every path the system uses hangs off one home folder, so a test, a laptop and a server differ only in
``HEARTRISK_HOME`` (and, at scale, ``HEARTRISK_STORE_URI`` and ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
        lines = [f"{env_vars.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()]
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``HEARTRISK_*`` variables; CLI options come in as overrides."""
        return settings_from_env(cls, ENV_VARS, "settings", env, overrides)

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
