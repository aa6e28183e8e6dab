"""The champion the server is using, kept fresh without a restart.

A background thread asks the registry for the champion's version every few seconds (one cheap query)
and loads a new version only when the alias has moved, so requests never wait on the registry: they
read whatever model is current. Until a champion exists, :meth:`ModelCache.get` raises
:class:`ModelUnavailableError` with the reason, which the API turns into a 503 and the form into a notice.
If loading a new version fails, the server keeps serving the version it has and says why in the log.
"""

from __future__ import annotations

import logging
import threading

from heartrisk.config import Settings
from heartrisk.model.registry import LoadedModel, NoModelError, champion_version, load_model
from heartrisk.web.risk_check.scorer import Scorer

log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """No model can be served right now; the message says why and what to run."""


class ModelCache:
    """Serves the registry's champion and follows the alias as it moves."""

    def __init__(self, settings: Settings, poll_seconds: float = 5.0) -> None:
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._scorer: Scorer | None = None
        self._reason = "the model has not been looked up yet"
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading
    def get(self) -> Scorer:
        """The model to serve now, ready to score (never blocks on the registry)."""
        scorer = self._scorer
        if scorer is None:
            raise ModelUnavailableError(self._reason)
        return scorer

    @property
    def version(self) -> str | None:
        scorer = self._scorer
        return scorer.loaded.version if scorer else None

    @property
    def reason(self) -> str | None:
        """Why there is no model, or None when one is served."""
        return None if self._scorer else self._reason

    # ------------------------------------------------------------------ refreshing
    def refresh(self) -> bool:
        """Look the champion up once; load it if it changed. True when the served model changed."""
        with self._refresh_lock:
            try:
                version = champion_version(self.settings)
            except Exception as exc:  # registry down: keep what we serve
                log.warning("cannot reach the model registry: %s", exc)
                if self._scorer is None:
                    self._reason = f"the model registry cannot be reached: {exc}"
                return False
            if version is None:
                self._scorer = None
                self._reason = ("there is no champion model yet: run `heartrisk train` "
                                "(after `heartrisk ingest`)")
                return False
            if self._scorer is not None and self._scorer.loaded.version == version:
                return False
            try:
                scorer = _ready(load_model(self.settings, version))
            except NoModelError as exc:
                self._reason = str(exc)
                return False
            except Exception as exc:
                log.exception("loading model version %s failed; still serving %s", version, self.version)
                if self._scorer is None:
                    self._reason = f"model version {version} could not be loaded: {exc}"
                return False
            previous, self._scorer = self.version, scorer
            log.info("serving model version %s (was %s)", version, previous)
            return True

    def start(self) -> None:
        """Load the champion now, then follow it from a daemon thread."""
        self.refresh()
        if self._thread is None and self.poll_seconds > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="model-cache", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()


def _ready(loaded: LoadedModel) -> Scorer:
    """A scorer for the model, warmed up on one all-Unknown row so the first person does not pay
    for lazy set-up (the SHAP explainer of a forest, say)."""
    scorer = Scorer(loaded)
    scorer.score([{}], with_explanations=False)
    try:
        scorer.score([{}], with_explanations=True)
        scorer.cheap(True)  # measures what a row costs, once
    except Exception:  # a model that cannot explain still serves risks
        log.exception("model version %s cannot explain its predictions", loaded.version)
    return scorer
