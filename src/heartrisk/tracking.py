"""MLflow tracking for every pipeline: one client per settings, experiments, and looking up past runs.

Each pipeline (training, synthesizer, feature pipeline, batch inference) records its runs in its own
experiment; these helpers are the one place that knows how to reach the tracking store named by the
settings (never MLflow's process-wide default) and how to ask it without creating it by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heartrisk.config import Settings


def client(settings: Settings) -> Any:
    """An MLflow client on the settings' tracking URI, which is also the model registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def tracking_exists(settings: Settings) -> bool:
    """False for a local SQLite store that was never created: a status query must not create one."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def experiment_id(settings: Settings, name: str) -> str:
    """The experiment's id; created on first use with its artifacts under the home (or on the server)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    if settings.experiment_artifact_location:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow_client.create_experiment(name, artifact_location=settings.experiment_artifact_location)
    except MlflowException:  # another process created it between the two calls
        return mlflow_client.get_experiment_by_name(name).experiment_id


def find_runs(settings: Settings, experiment: str, filter_string: str = "", max_results: int = 1,
              order_by: list[str] | None = None) -> list[Any]:
    """Runs of ``experiment`` matching ``filter_string``, newest first; [] when there are none yet
    (no tracking store, no such experiment), without creating either."""
    if not tracking_exists(settings):
        return []
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(mlflow_client.search_runs(
        [found.experiment_id], filter_string=filter_string, max_results=max_results,
        order_by=order_by or ["attributes.start_time DESC"]))
