"""The synthesizer in the MLflow registry: model ``heart-synthesizer``, alias ``champion``.

A new version becomes champion only through the gate (:mod:`heartrisk.synth.gate`), or when the
operator says so (:func:`promote_synthesizer`, `heartrisk synth promote VERSION`).

A version is an MLflow pyfunc model (``loader_module`` = this module) whose data folder holds the
CTGAN weights and :class:`~heartrisk.synth.synthesizer.SynthInfo`. The weights' sha256 is kept as a tag of the
model version, in the registry database, so a damaged or swapped file is caught at load with a clear
error instead of producing rows. mlflow is imported inside the functions: `status` stays quick.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from heartrisk.config import Settings
from heartrisk.synth.gate import GATED_METRICS, ChampionFigures, GateDecision
from heartrisk.synth.synthesizer import SynthError, Synthesizer
from heartrisk.tracking import CHAMPION, TrackedRun, set_champion, tracking_exists
from heartrisk.tracking import client as tracking_client

REGISTERED_MODEL = "heart-synthesizer"
EXPERIMENT = "synthesizer"
#: Artifact path of the pyfunc model inside its run; its data folder (MLmodel names where it went).
MODEL_ARTIFACT = "synthesizer"
DATA_FOLDER = "synthesizer"
SHA_TAG = "weights_sha256"
#: Quality figures copied onto the model version, so `status` shows them without the run.
QUALITY_TAGS = ("quality_overall", "quality_column_shapes", "quality_column_pair_trends",
                "positive_rate_real", "positive_rate_synthetic_raw", "repaired_share", "out_of_range_share",
                "rejected_share",
                "tstr_roc_auc", "trtr_roc_auc")
TRAIN_HINT = "train one with `heartrisk synth train`"
#: Tags of a version: the gate's decision when it was registered; when and why it became champion.
DECISION_TAG = "decision"


class SynthesizerMissingError(SynthError):
    """No synthesizer is registered (or not under the asked alias/version)."""


class SynthesizerCorruptError(SynthError):
    """A registered synthesizer cannot be used: files missing, damaged or from another spec."""


@dataclass
class LoadedSynthesizer:
    """A synthesizer from the registry and where it came from (for lineage in the daily run)."""

    synthesizer: Synthesizer
    version: str
    run_id: str


def _requirements() -> list[str]:
    pins = []
    for package in ("ctgan", "torch", "pandas", "sdmetrics"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            pins.append(package)
    return pins


def register_synthesizer(settings: Settings, run: TrackedRun, synth: Synthesizer, metrics: dict[str, float],
                         decision: GateDecision) -> str:
    """Log ``synth`` into the run and register it as a new version of ``heart-synthesizer``, tagged with
    its figures and the gate's ``decision``; ``champion`` moves to it only if the decision promotes it.
    Returns the version."""
    from mlflow.exceptions import MlflowException

    source, sha = _log_synthesizer(run, synth)
    client = tracking_client(settings)
    try:
        client.create_registered_model(REGISTERED_MODEL, description=(
            "CTGAN synthesizer of heart rows; quality measured on held-out real rows (docs/synthetic.md)"))
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {SHA_TAG: sha, DECISION_TAG: decision.text,
            **{k: f"{metrics[k]:.4f}" for k in QUALITY_TAGS if k in metrics}}
    created = client.create_model_version(REGISTERED_MODEL, source, run_id=run.run_id, tags=tags)
    if decision.promoted:
        set_champion(client, REGISTERED_MODEL, str(created.version), decision.text)
    return str(created.version)


def _log_synthesizer(run: TrackedRun, synth: Synthesizer) -> tuple[str, str]:
    """Save ``synth`` as a pyfunc model into the run's artifacts; returns (source URI, sha256)."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="heartrisk-synth-") as tmp:
        data = Path(tmp) / "data" / DATA_FOLDER
        sha = synth.save(data)
        model_dir = Path(tmp) / MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            str(model_dir), loader_module=__name__, data_path=str(data),
            pip_requirements=_requirements(),
            metadata={"heartrisk": "synthesizer", SHA_TAG: sha},
        )
        run.log_artifacts(model_dir, MODEL_ARTIFACT)
    return f"{run.artifact_uri}/{MODEL_ARTIFACT}", sha


def champion_figures(settings: Settings) -> ChampionFigures | None:
    """The champion's version and gated figures from its tags (no weights read); None if none."""
    if not tracking_exists(settings):
        return None
    try:
        entry = _model_version(tracking_client(settings), CHAMPION, None)
    except SynthesizerMissingError:
        return None
    figures = {}
    for key in GATED_METRICS:
        try:
            figures[key] = float((entry.tags or {})[key])
        except (KeyError, TypeError, ValueError):
            continue  # the gate says the champion has nothing to compare with
    return ChampionFigures(str(entry.version), figures)


def registered_versions(settings: Settings) -> list[str]:
    """Every registered version, oldest first (for messages naming what exists)."""
    if not tracking_exists(settings):
        return []
    found = tracking_client(settings).search_model_versions(f"name = '{REGISTERED_MODEL}'")
    return sorted((str(v.version) for v in found), key=int)


def promote_synthesizer(settings: Settings, version: str, reason: str = "promoted by the operator") -> str:
    """Make ``version`` the champion without the gate (the operator's override); returns it.

    Refuses a version that does not exist (naming those that do) or whose files do not load: the
    daily job would otherwise fail on it every day.
    """
    version = str(version).strip()
    known = registered_versions(settings)
    if version not in known:
        raise SynthesizerMissingError(
            f"{REGISTERED_MODEL} has no version {version!r} "
            f"(versions: {', '.join(known) if known else f'none; {TRAIN_HINT}'})")
    load_synthesizer(settings, model_version=version)  # raises SynthesizerCorruptError, naming it
    set_champion(tracking_client(settings), REGISTERED_MODEL, version, reason)
    return version


def _model_version(client: Any, alias: str, model_version: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    what = f"version {model_version}" if model_version else f"alias {alias!r}"
    try:
        if model_version:
            return client.get_model_version(REGISTERED_MODEL, model_version)
        return client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException as exc:
        raise SynthesizerMissingError(
            f"no synthesizer registered as {REGISTERED_MODEL} ({what}): {TRAIN_HINT}"
        ) from exc


def _local_copy(source: str, tmp: str, settings: Settings) -> Path:
    """The model folder on this machine: read in place from a local artifact store, else downloaded."""
    import mlflow.artifacts

    parsed = urlparse(source)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
        if not path.is_dir():
            raise FileNotFoundError(path)
        return path
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp,
                                                    tracking_uri=settings.tracking_uri))


def load_synthesizer(settings: Settings, alias: str = CHAMPION,
                     model_version: str | None = None) -> LoadedSynthesizer:
    """The registered synthesizer (champion by default), checked against its recorded checksum.

    Raises :class:`SynthesizerMissingError` (with how to train one) when nothing is registered and
    :class:`SynthesizerCorruptError` when the entry exists but its files are unusable.
    """
    from mlflow.models import Model

    if not tracking_exists(settings):
        raise SynthesizerMissingError(f"no model registry at {settings.tracking_uri} yet: {TRAIN_HINT}")
    client = tracking_client(settings)
    entry = _model_version(client, alias, model_version)
    name = f"{REGISTERED_MODEL} version {entry.version}"

    def corrupt(why: str) -> SynthesizerCorruptError:
        return SynthesizerCorruptError(
            f"{name} is unusable: {why}. Retrain with `heartrisk synth train`, or point the "
            f"'{CHAMPION}' alias at a good version in MLflow"
        )

    sha = (entry.tags or {}).get(SHA_TAG)
    if not sha:
        raise corrupt(f"its '{SHA_TAG}' tag is missing")
    with tempfile.TemporaryDirectory(prefix="heartrisk-synth-") as tmp:
        try:
            local = _local_copy(entry.source, tmp, settings)
        except Exception as exc:
            raise corrupt(f"its files at {entry.source} cannot be read ({type(exc).__name__})") from None
        try:
            data = Model.load(str(Path(local) / "MLmodel")).flavors["python_function"]["data"]
        except Exception as exc:
            raise corrupt(f"its MLmodel file is unreadable ({type(exc).__name__})") from None
        try:
            synth = Synthesizer.load(Path(local) / data, expected_sha256=sha)
        except SynthError as exc:
            raise corrupt(str(exc)) from None
    return LoadedSynthesizer(synth, str(entry.version), entry.run_id or "")


def synthesizer_status(settings: Settings) -> dict[str, Any]:
    """The champion synthesizer's version and quality, for `heartrisk status` (reads no weights)."""
    if not tracking_exists(settings):
        return {"registered": False, "hint": TRAIN_HINT}
    client = tracking_client(settings)
    try:
        entry = _model_version(client, CHAMPION, None)
    except SynthesizerMissingError:
        return {"registered": False, "hint": TRAIN_HINT}
    run = client.get_run(entry.run_id) if entry.run_id else None
    metrics = run.data.metrics if run else {}
    params = run.data.params if run else {}
    shown = {k: round(float(metrics[k]), 4) for k in (*QUALITY_TAGS, "tstr_gap") if k in metrics}
    return {
        "registered": True, "name": REGISTERED_MODEL, "alias": CHAMPION, "version": str(entry.version),
        "run_id": entry.run_id, "trained_at": pd.Timestamp(entry.creation_timestamp, unit="ms",
                                                           tz="UTC").isoformat(),
        "fit_rows": params.get("fit_rows"), "epochs": params.get("epochs"),
        "best_epoch": params.get("best_epoch"), "quality": shown,
    }


# ---------------------------------------------------------------------------------------- pyfunc
class _PyfuncSynthesizer:
    """What ``mlflow.pyfunc.load_model`` returns: ``predict`` samples rows.

    Input: a frame with a ``rows`` column (first row used) and optionally ``positive_rate`` and
    ``seed``. Output: the valid synthetic rows (spec names).
    """

    def __init__(self, synth: Synthesizer) -> None:
        self.synth = synth

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        first = pd.DataFrame(model_input).iloc[0]
        rate = first.get("positive_rate")
        seed = first.get("seed")
        return self.synth.sample(
            int(first["rows"]),
            positive_rate=None if rate is None or pd.isna(rate) else float(rate),
            seed=None if seed is None or pd.isna(seed) else int(seed),
        ).frame


def _load_pyfunc(data_path: str) -> _PyfuncSynthesizer:
    """MLflow's entry point for ``mlflow.pyfunc.load_model`` of a synthesizer version."""
    return _PyfuncSynthesizer(Synthesizer.load(Path(data_path)))
