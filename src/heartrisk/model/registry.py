"""The MLflow model registry: registering classifier versions, which exist, which one is the champion.

Every consumer (web app, batch inference, ``heartrisk predict``) goes through :func:`champion_model`
or :func:`load_model` and gets a :class:`LoadedModel`: the calibrated model plus the threshold, base
rate, test metrics and lineage stored with it. Servers poll :func:`champion_version` (one SQLite
query) and reload only when it changes; :func:`load_model` keeps loaded versions in memory, since a
registered version never changes.

The alias ``champion`` marks the version in use (MLflow 3: aliases, not stages). Each promotion is
appended to the registered model's ``champion_history`` tag, which is what ``rollback`` walks back.
:func:`register_model` is the one way a version is made (the training job calls it with the gate's
decision), as :func:`heartrisk.synth.registry.register_synthesizer` is for the synthesizer.

Models are stored with cloudpickle by default: loading a skops model cost about 12 s more per process
here (importing ``skops.io`` imports torch). The registry is written only by our own training job;
``serialization="skops"`` stores with skops for registries others can write to.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heartrisk.clock import from_millis
from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import FEATURES
from heartrisk.tracking import (
    CHAMPION,
    ERASED_TAG,
    TrackedRun,
    alias_exists,
    client,
    mark_erased,
    set_champion,
    tracking_exists,
)

if TYPE_CHECKING:  # the model stack (sklearn, LightGBM) loads only with a model
    from heartrisk.model.estimator import RiskModel
    from heartrisk.model.gate import ChampionScores, GateDecision

MODEL_NAME = "heart-risk-classifier"
HISTORY_TAG = "champion_history"
#: Loaded versions kept in memory per process (a version is immutable once registered).
CACHE_SIZE = 4


class NoModelError(UserError, RuntimeError):
    """There is no champion (or no such version) yet; the message says what to run."""


class RegistryError(UserError, RuntimeError):
    """A registry operation the operator asked for cannot be done (unknown version, no history)."""


@dataclass
class LoadedModel:
    """One registered version, ready to score: the one object every consumer needs."""

    version: str
    threshold: float
    base_rate: float
    trained_at: datetime
    run_id: str
    metrics: dict[str, float]
    feature_group: str
    feature_group_version: int
    model: RiskModel = field(repr=False)
    tags: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def family(self) -> str:
        return self.model.family

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(heart disease) per row of the 17 features (None/NaN = Unknown)."""
        return self.model.risk(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``probability >= threshold`` per row (bool)."""
        return self.predict_proba(X) >= self.threshold

    def imputation(self) -> dict[str, object]:
        """The value the model uses for each feature when the answer is Unknown."""
        return self.model.imputation()

    def imputed(self, X: pd.DataFrame) -> list[dict[str, object]]:
        """Per row: feature -> the value the model used in place of each Unknown answer."""
        values = self.imputation()
        frame = X.reindex(columns=list(values))
        unknown = frame.isna().to_numpy()
        names = list(values)
        return [{names[j]: values[names[j]] for j in np.flatnonzero(row)} for row in unknown]

    def explain(self, X: pd.DataFrame) -> pd.DataFrame:
        """SHAP contribution per row and question, in calibrated log-odds.

        ``base_value + row.sum() == logit(predict_proba(row))``; positive raises the risk.
        """
        from heartrisk.model.explain import explain

        return explain(self.model, X)[0]

    @property
    def base_value(self) -> float:
        """Explanations start here (calibrated log-odds); ``sigmoid(base_value)`` is a risk."""
        from heartrisk.model.explain import base_value

        return base_value(self.model)


# ---------------------------------------------------------------------------------------- access
def champion_version(settings: Settings) -> str | None:
    """The champion's version, or None: one cheap query, for servers polling for a new champion."""
    if not tracking_exists(settings):
        return None
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
    except MlflowException:
        return None


def has_champion(settings: Settings) -> bool:
    """Whether there is a champion; on the default SQLite registry without importing MLflow (which
    takes seconds: `heartrisk up` asks this before it decides what to start)."""
    return alias_exists(settings, MODEL_NAME, CHAMPION) or champion_version(settings) is not None


def champion_model(settings: Settings) -> LoadedModel:
    """The champion (``models:/heart-risk-classifier@champion``); NoModelError if there is none."""
    version = champion_version(settings)
    if version is None:
        raise NoModelError(
            f"no champion model in the registry at {settings.tracking_uri}; "
            "run `heartrisk train` first (after `heartrisk ingest`)"
        )
    return load_model(settings, version)


_cache: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
_cache_lock = threading.Lock()


def load_model(settings: Settings, version: str) -> LoadedModel:
    """A registered version by number (kept in a small per-process cache)."""
    key = (settings.tracking_uri, str(version))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = _load(settings, str(version))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def _load(settings: Settings, version: str) -> LoadedModel:
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    if not tracking_exists(settings):
        raise NoModelError(f"no model registry at {settings.tracking_uri}; run `heartrisk train` first")
    mlflow_client = client(settings)
    try:
        mv = mlflow_client.get_model_version(MODEL_NAME, version)
    except MlflowException:
        raise NoModelError(f"{MODEL_NAME} has no version {version!r}; "
                           "`heartrisk model list` shows the versions") from None
    location = _model_location(mlflow_client, mv)
    model = mlflow.sklearn.load_model(location)
    run = mlflow_client.get_run(mv.run_id)
    metrics = {k.removeprefix("test_"): float(v) for k, v in run.data.metrics.items()
               if k.startswith("test_")}
    params = run.data.params
    return LoadedModel(
        version=str(mv.version),
        threshold=float(model.threshold),
        base_rate=float(model.base_rate),
        trained_at=from_millis(run.info.start_time),
        run_id=mv.run_id,
        metrics=metrics,
        feature_group=params.get("feature_group", ""),
        feature_group_version=int(params.get("feature_group_version", -1)),
        model=model,
        tags=dict(mv.tags),
    )


def _model_location(mlflow_client: Any, mv: Any) -> str:
    """Where the version's files are: the logged model's artifact folder (MLflow 3 versions point at
    ``models:/m-<id>``, which MLflow would resolve against the process-wide tracking URI)."""
    model_id = getattr(mv, "model_id", None)
    if not model_id and str(mv.source).startswith("models:/m-"):
        model_id = str(mv.source).removeprefix("models:/").split("/")[0]
    if model_id:
        return mlflow_client.get_logged_model(model_id).artifact_location
    return mv.source

def champion_scores(settings: Settings, X: pd.DataFrame) -> ChampionScores | None:
    """The champion's probabilities on ``X`` for the gate; None without a champion. A champion that
    cannot score the rows (a model of an older spec, say) is reported with why, not raised."""
    from heartrisk.model.gate import ChampionScores

    try:
        champion = champion_model(settings)
    except NoModelError:
        return None
    erased = ERASED_TAG in champion_tags(settings)  # read now: a forget may have marked it since loading
    try:
        return ChampionScores(champion.version, champion.predict_proba(X), erased=erased)
    except Exception as exc:
        return ChampionScores(champion.version, None, f"{type(exc).__name__}: {exc}", erased=erased)


def champion_tags(settings: Settings) -> dict[str, str]:
    """The champion version's tags as they are now (empty without a champion)."""
    entry = champion_entry(settings)
    return entry["tags"] if entry else {}


def champion_entry(settings: Settings) -> dict[str, Any] | None:
    """The champion's version, run id and tags as they are now (no model loaded), or None."""
    from mlflow.exceptions import MlflowException

    if not tracking_exists(settings):
        return None
    try:
        found = client(settings).get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except MlflowException:
        return None
    return {"version": str(found.version), "run_id": found.run_id, "tags": dict(found.tags or {})}


# ---------------------------------------------------------------------------------------- registering
def register_model(settings: Settings, run: TrackedRun, model: RiskModel, tags: dict[str, str],
                   decision: GateDecision, serialization: str = "cloudpickle") -> str:
    """Log ``model`` as the run's MLflow model and register it as a new version of
    ``heart-risk-classifier`` with ``tags``; ``champion`` moves to it only if ``decision`` promotes it.
    Returns the version. The model's input example is :func:`example_answers`, made from the
    feature spec: an artifact holds no person's answers."""
    from mlflow.exceptions import MlflowException

    logged = _log_model(run, model, example_answers(), serialization)
    mlflow_client = client(settings)
    try:
        mlflow_client.create_registered_model(MODEL_NAME)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # The source is the logged model's folder, not ``models:/<id>``: MLflow's SQL registry resolves
    # the latter through the process-wide tracking URI (a TODO in mlflow 3.17), which is never set.
    created = mlflow_client.create_model_version(MODEL_NAME, logged.artifact_location, run_id=run.run_id,
                                                 tags=tags, model_id=logged.model_id)
    version = str(created.version)
    if decision.promoted:
        promote(settings, version, decision.text)
    return version


def _log_model(run: TrackedRun, model: RiskModel, example: pd.DataFrame, serialization: str) -> Any:
    """The model as an MLflow logged model of the run (what ``mlflow.sklearn.log_model`` makes, through
    the run's own client); returns the logged model. ``skops`` records its trusted types with it."""
    import tempfile

    import mlflow.sklearn
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    source = run.client.get_run(run.run_id)
    logged = run.client.create_logged_model(source.info.experiment_id, name="model", source_run_id=run.run_id,
                                            params=dict(source.data.params))
    run.client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=0)])
    trusted = None
    if serialization == "skops":
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    with tempfile.TemporaryDirectory(prefix="heartrisk-model-") as tmp:
        folder = f"{tmp}/model"
        mlflow.sklearn.save_model(
            model, folder, serialization_format=serialization, skops_trusted_types=trusted,
            signature=signature(), input_example=example, pyfunc_predict_fn="predict_proba",
            pip_requirements=_requirements(),
            mlflow_model=Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                               run_id=run.run_id, model_id=logged.model_id))
        run.client.log_model_artifacts(logged.model_id, folder)
    run.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged


def example_answers() -> pd.DataFrame:
    """Three made-up people for the model's input example, derived from the feature spec alone (real
    rows there would be a copy of someone's answers in every artifact store the model is copied to):
    the first answer of each question and a low number, the last answer and a high one, and a
    person who answered only two questions (Unknown is accepted)."""
    rows: list[dict[str, object]] = [{}, {}, {}]
    for f in FEATURES:
        if f.is_numeric:
            low, high = float(f.low or 0.0), float(f.high or 0.0)
            rows[0][f.name] = float(round(low + (high - low) / 4))
            rows[1][f.name] = float(round(low + (high - low) / 2))
        else:
            rows[0][f.name], rows[1][f.name] = f.values[0], f.values[-1]
        rows[2][f.name] = None
    rows[2].update(bmi=rows[0]["bmi"], sex=rows[1]["sex"])
    return pd.DataFrame(rows, columns=[f.name for f in FEATURES]).astype(object)


def signature() -> Any:
    """The 17 answers in (each optional: Unknown), the two-column probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("double" if f.is_numeric else "string", f.name, required=False)
                     for f in FEATURES])
    outputs = Schema([TensorSpec(np.dtype("float64"), (-1, 2), "probabilities")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    """Pinned, so MLflow does not infer them (7 s per logged model)."""
    from importlib.metadata import version

    names = ("scikit-learn", "imbalanced-learn", "lightgbm", "skops", "pandas", "numpy", "shap")
    return [f"{n}=={version(n)}" for n in names]


# ---------------------------------------------------------------------------------------- operator
def versions(settings: Settings) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its test metrics, tags and aliases."""
    if not tracking_exists(settings):
        return []
    from mlflow.exceptions import MlflowException

    try:
        found = client(settings).search_model_versions(f"name='{MODEL_NAME}'")
    except MlflowException:
        return []
    champion = champion_version(settings)  # search results do not carry aliases
    rows = []
    for mv in sorted(found, key=lambda m: int(m.version), reverse=True):
        aliases = set(mv.aliases or []) | ({CHAMPION} if str(mv.version) == champion else set())
        rows.append({
            "version": str(mv.version),
            "created": from_millis(mv.creation_timestamp),
            "aliases": sorted(aliases),
            "run_id": mv.run_id,
            "tags": dict(mv.tags),
        })
    return rows


def champion_history(settings: Settings) -> list[str]:
    """Versions that were champion, oldest first (the current one last)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client(settings).get_registered_model(MODEL_NAME).tags
    except MlflowException:
        return []
    text = tags.get(HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def promote(settings: Settings, version: str, reason: str = "promoted by the operator") -> None:
    """Give ``version`` the champion alias and record it in the history."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    version = str(version)
    try:
        found = mlflow_client.get_model_version(MODEL_NAME, version)
    except MlflowException:
        known = ", ".join(v["version"] for v in versions(settings)) or "none"
        raise RegistryError(f"{MODEL_NAME} has no version {version!r} (versions: {known})") from None
    refuse_erased(version, dict(found.tags or {}))
    history = champion_history(settings)
    set_champion(mlflow_client, MODEL_NAME, version, reason)
    if not history or history[-1] != version:
        history.append(version)
    mlflow_client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))


def rollback(settings: Settings) -> str:
    """Make the previous champion the champion again; returns its version."""
    history = champion_history(settings)
    current = champion_version(settings)
    if current is None:
        raise RegistryError("there is no champion to roll back from; run `heartrisk train` first")
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError(f"version {current} is the only champion there has been; "
                            "nothing to roll back to")
    previous = history[-1]
    mlflow_client = client(settings)
    refuse_erased(previous, dict(mlflow_client.get_model_version(MODEL_NAME, previous).tags or {}))
    set_champion(mlflow_client, MODEL_NAME, previous, f"rollback from version {current}")
    mlflow_client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    return previous


def refuse_erased(version: str, tags: dict[str, str]) -> None:
    """A version that learned from an erased row never becomes champion again."""
    if ERASED_TAG in tags:
        raise RegistryError(f"{MODEL_NAME} version {version} learned from rows erased by `heartrisk forget` "
                            f"({tags[ERASED_TAG]}); it cannot be champion again: retrain instead")


def mark_classifiers(settings: Settings, marked: list[str]) -> None:
    """Tag ``marked`` versions as having learned from an erased row (`heartrisk forget`)."""
    mark_erased(client(settings), MODEL_NAME, marked)


def registry_status(settings: Settings) -> dict[str, Any]:
    """For `heartrisk status`: versions, the champion and its test metrics (never creates the DB)."""
    if not tracking_exists(settings):
        return {"tracking_uri": settings.tracking_uri, "exists": False,
                "hint": "run `heartrisk train`"}
    rows = versions(settings)
    champion = champion_version(settings)
    report: dict[str, Any] = {"tracking_uri": settings.tracking_uri, "model": MODEL_NAME,
                              "versions": len(rows), "latest": rows[0]["version"] if rows else None,
                              "champion": champion}
    for row in rows:
        if row["version"] == champion:
            tags = row["tags"]
            report["champion_model"] = f"{tags.get('family', '?')}/{tags.get('treatment', '?')}"
            report["champion_test"] = {k.removeprefix("test_"): float(v) for k, v in tags.items()
                                       if k.startswith("test_")}
            report["champion_threshold"] = float(tags.get("threshold", "nan"))
            report["champion_trained_on"] = (f"{tags.get('feature_group', '?')}@v"
                                             f"{tags.get('feature_group_version', '?')}")
            report["champion_since"] = tags.get("promoted", "")
            if ERASED_TAG in tags:
                report["champion_learned_from_erased_rows"] = tags[ERASED_TAG]
    return report
