"""MLflow tracking for every job: one client per settings, one run context, looking up past runs.

Each job (training, synthesizer, feature pipeline, batch inference) records its runs in its own
experiment. This module is the one place that knows how to reach the tracking store named by the
settings, through a client made for them: nothing sets MLflow's process-wide tracking URI, so two homes
(two tests, a server and a job) can share one process. :func:`run` is the one way a job opens and
closes a run; :class:`TrackedRun` is what it logs through.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from heartrisk.clock import stamp
from heartrisk.config import Settings

#: Metrics sent per request (MLflow refuses batches of more than 1,000).
BATCH = 900
#: The alias of the version in use, for the classifier and the synthesizer alike.
CHAMPION = "champion"
#: The model version tag that says when and why a version became champion.
PROMOTED_TAG = "promoted"
#: The model version tag `heartrisk forget` sets on every version that learned from an erased row
#: (when it was marked); such a version never becomes champion again (docs/reliability.md).
ERASED_TAG = "learned_from_erased_rows"


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


def alias_exists(settings: Settings, model_name: str, alias: str) -> bool:
    """Whether ``model_name@alias`` is set, answered from the default SQLite registry with one
    read-only query and without importing MLflow (seconds); False when that cannot tell (another
    kind of store, no database yet): ask MLflow then."""
    uri = settings.tracking_uri
    database = uri.removeprefix("sqlite:///")
    if not uri.startswith("sqlite:///") or not Path(database).is_file():
        return False
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(
            f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute("SELECT 1 FROM registered_model_aliases WHERE name = ? AND alias = ?",
                          (model_name, alias)).fetchone() is not None
    return False


def set_champion(mlflow_client: Any, model_name: str, version: str, reason: str) -> None:
    """Point ``model_name@champion`` at ``version`` and tag the version with when and why."""
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    mlflow_client.set_model_version_tag(model_name, version, PROMOTED_TAG, stamp(reason))


def erased_stamp() -> str:
    """The value of :data:`ERASED_TAG`: when the version was marked (never which row)."""
    return stamp("trained on a row that `heartrisk forget` erased")


def mark_erased(mlflow_client: Any, model_name: str, versions: Iterable[str]) -> None:
    """Tag each version as having learned from an erased row (the tag says when; never which row).

    A version already marked keeps its tag: it says when the version was first marked (a later
    forget, or forget's second reach after a training run marked its own version, changes nothing)."""
    for version in versions:
        if ERASED_TAG in (mlflow_client.get_model_version(model_name, str(version)).tags or {}):
            continue
        mlflow_client.set_model_version_tag(model_name, str(version), ERASED_TAG, erased_stamp())


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


@dataclass
class TrackedRun:
    """One MLflow run, as a job logs to it: values go in batches, non-finite metrics are left out."""

    client: Any
    run_id: str
    #: Set by :meth:`committed`: the job's write is done, a failure must not mark the run FAILED.
    wrote: bool = False

    @property
    def artifact_uri(self) -> str:
        return str(self.client.get_run(self.run_id).info.artifact_uri).rstrip("/")

    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def set_tags(self, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0,
                    at: datetime | None = None) -> None:
        """Metrics at one step; missing, NaN and infinite values are skipped (MLflow refuses some).
        ``at`` is the time they are recorded at (default now; a backfill passes its own clock)."""
        self.log_history(((name, value, step) for name, value in metrics.items()), at)

    def log_history(self, points: Iterable[tuple[str, float | None, int]],
                    at: datetime | None = None) -> None:
        """Metrics over steps (an epoch's losses, say), as (name, value, step)."""
        from mlflow.entities import Metric

        stamp = int((at.timestamp() if at is not None else time.time()) * 1000)
        metrics = [Metric(name, float(value), stamp, step) for name, value, step in points
                   if value is not None and math.isfinite(float(value))]
        for start in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + BATCH])

    def log_artifact(self, path: Path | str, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_artifacts(self, path: Path | str, folder: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(path), folder)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_input(self, dataset: Any, context: str, tags: Mapping[str, str]) -> None:
        """A dataset the run read (an ``mlflow.data`` dataset), as ``mlflow.log_input`` records it."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        input_tags = [*(InputTag(k, v) for k, v in tags.items()), InputTag(MLFLOW_DATASET_CONTEXT, context)]
        self.client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(), input_tags)])

    def committed(self) -> None:
        """The job's write is committed: from here a failure leaves the run RUNNING instead of FAILED,
        so the next run finishes this one's bookkeeping rather than writing again (the daily job)."""
        self.wrote = True

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


@contextmanager
def run(settings: Settings, experiment: str, name: str,
        tags: Mapping[str, str] | None = None) -> Iterator[TrackedRun]:
    """A new run in ``experiment``: FINISHED when the block ends, FAILED when it raises (unless the
    block said its write was :meth:`~TrackedRun.committed`).

    A process killed inside the block leaves the run RUNNING, which is how the daily job recognises a
    run that was cut short (:mod:`heartrisk.jobs.daily`)."""
    mlflow_client = client(settings)
    created = mlflow_client.create_run(experiment_id(settings, experiment), run_name=name,
                                       tags=dict(tags or {}))
    tracked = TrackedRun(mlflow_client, created.info.run_id)
    try:
        yield tracked
    except BaseException:
        if not tracked.wrote:
            tracked.finish("FAILED")
        raise
    tracked.finish()


def attach(settings: Settings, run_id: str) -> TrackedRun:
    """An existing run, to finish what a killed process started in it."""
    return TrackedRun(client(settings), run_id)


def champion_files(settings: Settings, model_name: str,
                   alias: str = "champion") -> tuple[str, str, int] | None:
    """``(version, location, files)`` of ``model_name@alias``: where its artifacts should be and how
    many files are there (0: gone, e.g. a bucket emptied by hand); None when there is no such alias.
    ``heartrisk doctor`` asks this for the classifier and the synthesizer."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    if not tracking_exists(settings):
        return None
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    model_id = getattr(mv, "model_id", None)
    if not model_id and str(mv.source).startswith("models:/m-"):
        model_id = str(mv.source).removeprefix("models:/").split("/")[0]
    location = mlflow_client.get_logged_model(model_id).artifact_location if model_id else str(mv.source)
    try:
        files = mlflow.artifacts.list_artifacts(artifact_uri=location, tracking_uri=settings.tracking_uri)
    except Exception:  # an unreachable or emptied artifact store: nothing can be loaded from it
        files = []
    return str(mv.version), location, len(files)
