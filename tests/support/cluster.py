"""The shared services of a scale-out test and how a "machine" (a home of its own) reaches them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from heartrisk.config import Settings
from support.reliability import cli_env
from support.servers import s3_env


@dataclass(frozen=True)
class Cluster:
    """The shared services and the first machine's home (where the models were trained)."""

    root: Path
    s3: str
    bucket: str
    mlflow: str
    first: Settings
    redis: str

    @property
    def store_uri(self) -> str:
        return f"s3://{self.bucket}/store"

    def machine(self, name: str, store_uri: str | None = None) -> Settings:
        """Settings of another machine: its own home, the shared store and registry."""
        return Settings(home=self.root / name, store_uri=store_uri or self.store_uri,
                        mlflow_uri=self.mlflow)

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The environment of a `heartrisk` child process on that machine."""
        return {**cli_env(settings), **s3_env(self.s3), "HEARTRISK_STORE_URI": str(settings.store_uri),
                "MLFLOW_TRACKING_URI": self.mlflow, **extra}
