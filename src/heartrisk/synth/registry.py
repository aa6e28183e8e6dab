"""The synthesizer in the MLflow registry: model ``heart-synthesizer``, alias ``champion``.

A new version becomes champion only through the gate (:mod:`heartrisk.synth.gate`), or when the
operator says so (:func:`promote_synthesizer`, `heartrisk synth promote VERSION`).

A version is an MLflow pyfunc model (``loader_module`` = this module) whose data folder holds the
CTGAN weights and :class:`~heartrisk.synth.synthesizer.SynthInfo`. The weights' sha256 is kept as a tag of the
model version, in the registry database, so a damaged or swapped file is caught at load with a clear
error instead of producing rows. mlflow is imported inside the functions: `status` stays quick.

Privacy on the version's tags: the privacy report's figures and the gate's verdict (``privacy``); the
fit's lineage (``lineage_*``, :mod:`heartrisk.store.lineage`); ``training_rows`` = ``none`` once its
weights hold no training row (every new version, and old ones after :func:`scrub_synthesizers`);
``learned_from_erased_rows`` when `heartrisk forget` found it learned from an erased submission.
A version that failed the privacy gate becomes champion only by the operator's explicit acceptance,
recorded with who and why (``privacy_risk_accepted``); one that learned from erased rows never does.
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

from heartrisk.clock import from_millis, stamp
from heartrisk.config import Settings
from heartrisk.files import atomic_write, sha256
from heartrisk.synth.gate import GATED_METRICS, ChampionFigures, GateDecision
from heartrisk.synth.privacy import privacy_rows
from heartrisk.synth.synthesizer import MODEL_FILE, SynthError, Synthesizer
from heartrisk.tracking import (
    CHAMPION,
    ERASED_TAG,
    TrackedRun,
    mark_erased,
    set_champion,
    tracking_exists,
)
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
#: Privacy figures copied onto the model version (`status` and the dashboard read them there).
PRIVACY_TAGS = ("privacy_membership_auc", "privacy_membership_auc_real", "privacy_dcr_overfitting_protection",
                "privacy_dcr_baseline_protection", "privacy_dcr_baseline_protection_real",
                "privacy_exact_copy_share", "privacy_exact_copy_share_real", "privacy_exact_copy_excess",
                "privacy_disclosure_protection", "privacy_disclosure_protection_holdout",
                "privacy_disclosure_baseline", "privacy_disclosure_gap")
TRAIN_HINT = "train one with `heartrisk synth train`"
#: Tags of a version: the gate's decision when it was registered; when and why it became champion.
DECISION_TAG = "decision"
#: The privacy gate's verdict on the version ("passed: …" / "failed: …").
PRIVACY_TAG = "privacy"
#: Who accepted a version's privacy risk, when and why (`synth promote --accept-privacy-risk`).
ACCEPTED_TAG = "privacy_risk_accepted"
#: ``none`` once the version's saved weights hold no training row.
ROWS_TAG = "training_rows"
#: The checksum of the stripped weights while `synth scrub` replaces a version's file (either is valid).
SCRUB_SHA_TAG = "weights_sha256_scrubbed"


class PrivacyRiskError(SynthError):
    """The version failed the privacy gate and the operator did not accept the risk explicitly."""


class SynthesizerMissingError(SynthError):
    """No synthesizer is registered (or not under the asked alias/version)."""


class SynthesizerRetiredError(SynthesizerMissingError):
    """The champion learned from erased rows: nothing samples from it until a new fit replaces it."""


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
                         decision: GateDecision, lineage: dict[str, str] | None = None) -> str:
    """Log ``synth`` into the run and register it as a new version of ``heart-synthesizer``, tagged with
    its figures, its ``lineage`` and the gate's ``decision``; ``champion`` moves to it only if the
    decision promotes it. Returns the version."""
    from mlflow.exceptions import MlflowException

    source, sha = _log_synthesizer(run, synth)
    client = tracking_client(settings)
    try:
        client.create_registered_model(REGISTERED_MODEL, description=(
            "CTGAN synthesizer of heart rows; quality measured on held-out real rows (docs/synthetic.md)"))
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {SHA_TAG: sha, DECISION_TAG: decision.text, ROWS_TAG: "none", **(lineage or {}),
            **{k: f"{metrics[k]:.4f}" for k in (*QUALITY_TAGS, *PRIVACY_TAGS) if k in metrics}}
    if decision.privacy is not None:
        tags[PRIVACY_TAG] = decision.privacy.text
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
    return ChampionFigures(str(entry.version), figures, erased=ERASED_TAG in (entry.tags or {}))


def registered_versions(settings: Settings) -> list[str]:
    """Every registered version, oldest first (for messages naming what exists)."""
    if not tracking_exists(settings):
        return []
    found = tracking_client(settings).search_model_versions(f"name = '{REGISTERED_MODEL}'")
    return sorted((str(v.version) for v in found), key=int)


def promote_synthesizer(settings: Settings, version: str, reason: str = "promoted by the operator",
                        accept_privacy_risk: str | None = None) -> str:
    """Make ``version`` the champion without the quality gate (the operator's override); returns it.

    Refuses a version that does not exist (naming those that do), whose files do not load (the daily
    job would otherwise fail on it every day), or that learned from erased rows. A version that failed
    the privacy gate is promoted only with ``accept_privacy_risk`` (who accepts it and why), which is
    recorded on the version.
    """
    version = str(version).strip()
    known = registered_versions(settings)
    if version not in known:
        raise SynthesizerMissingError(
            f"{REGISTERED_MODEL} has no version {version!r} "
            f"(versions: {', '.join(known) if known else f'none; {TRAIN_HINT}'})")
    client = tracking_client(settings)
    tags = client.get_model_version(REGISTERED_MODEL, version).tags or {}
    if ERASED_TAG in tags:
        raise PrivacyRiskError(f"{REGISTERED_MODEL} version {version} learned from rows erased by "
                               f"`heartrisk forget` ({tags[ERASED_TAG]}); it cannot be champion again")
    verdict = tags.get(PRIVACY_TAG, "")
    failed = verdict.startswith("failed")
    if failed and not accept_privacy_risk:
        raise PrivacyRiskError(
            f"{REGISTERED_MODEL} version {version} failed the privacy gate "
            f"({verdict.removeprefix('failed: ')}); "
            "promote it only if you accept that risk: heartrisk synth promote "
            f"{version} --accept-privacy-risk --reason '<why>'")
    load_synthesizer(settings, model_version=version)  # raises SynthesizerCorruptError, naming it
    if failed:
        client.set_model_version_tag(REGISTERED_MODEL, version, ACCEPTED_TAG,
                                     stamp(accept_privacy_risk or ""))
        reason = f"{reason}, privacy risk accepted: {accept_privacy_risk}"
    set_champion(client, REGISTERED_MODEL, version, reason)
    return version


def mark_synthesizers(settings: Settings, versions: list[str]) -> None:
    """Tag ``versions`` as having learned from an erased row (`heartrisk forget`)."""
    mark_erased(tracking_client(settings), REGISTERED_MODEL, versions)


def synthesizer_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version, oldest first: its number, when it was registered and its tags (no weights read)."""
    if not tracking_exists(settings):
        return []
    found = tracking_client(settings).search_model_versions(f"name = '{REGISTERED_MODEL}'")
    return [{"version": str(v.version), "created": from_millis(v.creation_timestamp),
             "tags": dict(v.tags or {})} for v in sorted(found, key=lambda v: int(v.version))]


def version_tags(settings: Settings) -> dict[str, dict[str, str]]:
    """Every version's tags (no weights read), by version, oldest first."""
    return {row["version"]: row["tags"] for row in synthesizer_versions(settings)}


def run_id_of(settings: Settings, version: str) -> str | None:
    """The run that fitted ``version`` (its parameters are the fit's settings)."""
    return tracking_client(settings).get_model_version(REGISTERED_MODEL, version).run_id or None


def champion_version(settings: Settings) -> str | None:
    """The champion synthesizer's version, or None."""
    if not tracking_exists(settings):
        return None
    try:
        return str(_model_version(tracking_client(settings), CHAMPION, None).version)
    except SynthesizerMissingError:
        return None


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

    Raises :class:`SynthesizerMissingError` (with how to train one) when nothing is registered (or
    the alias names a version retired by `heartrisk forget`: :class:`SynthesizerRetiredError`) and
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

    if model_version is None and ERASED_TAG in (entry.tags or {}):
        raise SynthesizerRetiredError(
            f"{name}, the '{alias}' synthesizer, learned from rows erased by `heartrisk forget` and is "
            f"retired ({entry.tags[ERASED_TAG]}): {TRAIN_HINT} (user submissions are left out by default)")
    sha = (entry.tags or {}).get(SHA_TAG)
    accepted = tuple(t for t in (sha, (entry.tags or {}).get(SCRUB_SHA_TAG)) if t)
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
            synth = Synthesizer.load(Path(local) / data, expected_sha256=accepted)
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
    tags = dict(entry.tags or {})
    shown = {k: round(float(metrics[k]), 4) for k in (*QUALITY_TAGS, "tstr_gap") if k in metrics}
    report: dict[str, Any] = {
        "registered": True, "name": REGISTERED_MODEL, "alias": CHAMPION, "version": str(entry.version),
        "run_id": entry.run_id, "trained_at": pd.Timestamp(entry.creation_timestamp, unit="ms",
                                                           tz="UTC").isoformat(),
        "fit_rows": params.get("fit_rows"), "epochs": params.get("epochs"),
        "best_epoch": params.get("best_epoch"), "quality": shown,
        "privacy": privacy_rows(metrics, {k.removeprefix("privacy_limit_"): v for k, v in params.items()
                                          if k.startswith("privacy_limit_")}),
        "privacy_gate": tags.get(PRIVACY_TAG, "not judged (registered before the privacy gate)"),
        "fit_sources": (tags.get("lineage_sources") or params.get("fit_sources")
                        or "kaggle,user (fitted before the consent scope)"),
    }
    if ACCEPTED_TAG in tags:
        report["privacy_risk_accepted"] = tags[ACCEPTED_TAG]
    if ERASED_TAG in tags:
        report["learned_from_erased_rows"] = tags[ERASED_TAG]
    holding = [v for v, t in version_tags(settings).items() if t.get(ROWS_TAG) != "none"]
    if holding:
        report["versions_holding_training_rows"] = (f"{', '.join(holding)} (saved before rows were stripped; "
                                                    "`heartrisk synth scrub` rewrites them)")
    return report


@dataclass(frozen=True)
class ScrubResult:
    """The versions whose weights `synth scrub` rewrote."""

    versions: tuple[str, ...]

    @property
    def summary(self) -> str:
        return f"rewrote {len(self.versions)} synthesizer version(s) without training rows"


def scrub_synthesizers(settings: Settings) -> ScrubResult:
    """Rewrite the weights of every version saved before training rows were stripped (their files still
    hold CTGAN's row indices) with the stripped model; returns the versions rewritten.

    Safe to stop and repeat: the new checksum is recorded (``weights_sha256_scrubbed``, accepted at
    load) before the file is replaced, and becomes the version's checksum after. Samples do not change
    (tests/synth/test_artifact_rows.py). A version whose file does not match its checksum is left
    alone and named in the error.
    """
    import torch
    from mlflow.models import Model

    client = tracking_client(settings)
    rewritten, damaged = [], []
    for number, tags in version_tags(settings).items():
        if tags.get(ROWS_TAG) == "none":
            continue
        entry = client.get_model_version(REGISTERED_MODEL, number)
        with tempfile.TemporaryDirectory(prefix="heartrisk-scrub-") as tmp:
            local = _local_copy(entry.source, tmp, settings)
            data = Model.load(str(Path(local) / "MLmodel")).flavors["python_function"]["data"]
            weights = Path(local) / data / MODEL_FILE
            if sha256(weights) not in (tags.get(SHA_TAG), tags.get(SCRUB_SHA_TAG)):
                damaged.append(number)
                continue
            stripped = Path(tmp) / "stripped" / MODEL_FILE
            stripped.parent.mkdir()
            torch.save(Synthesizer.load(Path(local) / data).model, stripped)  # load() strips
            new_sha = sha256(stripped)
            client.set_model_version_tag(REGISTERED_MODEL, number, SCRUB_SHA_TAG, new_sha)
            _replace_artifact(client, entry, settings, f"{data}/{MODEL_FILE}", stripped, weights)
            client.set_model_version_tag(REGISTERED_MODEL, number, SHA_TAG, new_sha)
            client.set_model_version_tag(REGISTERED_MODEL, number, ROWS_TAG, "none")
            client.delete_model_version_tag(REGISTERED_MODEL, number, SCRUB_SHA_TAG)
            rewritten.append(number)
    if damaged:
        raise SynthesizerCorruptError(f"{REGISTERED_MODEL} version(s) {', '.join(damaged)}: the weights do "
                                      "not match their checksum; left as they are (rewritten: "
                                      f"{', '.join(rewritten) or 'none'})")
    return ScrubResult(tuple(rewritten))


def _replace_artifact(client: Any, entry: Any, settings: Settings, relative: str, new: Path,
                      local: Path) -> None:
    """Put ``new`` where the version's ``relative`` file is: in place (atomically) in a local artifact
    store, else uploaded over it into the version's run."""
    if urlparse(entry.source).scheme == "file":
        with atomic_write(local) as partial:
            partial.write_bytes(new.read_bytes())
        return
    run_root = client.get_run(entry.run_id).info.artifact_uri.rstrip("/")
    folder = f"{entry.source.removeprefix(run_root).strip('/')}/{Path(relative).parent.as_posix()}"
    client.log_artifact(entry.run_id, str(new), folder)


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
