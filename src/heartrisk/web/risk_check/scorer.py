"""Fast scoring of a few rows at a time: the served model's encoder compiled to lookup tables.

The model's scikit-learn pipeline (impute -> encode) costs about 10 ms per call whatever the number of
rows (pandas and input checks), and a request needs it for the risk and again for the explanation.
A person's answers are few and known in advance: every encoded column belongs to one question, a
number passes through (Unknown -> its imputed value) and an answer maps to a fixed vector. So the
encoder is compiled once per model version by *probing the real pipeline* with each possible answer,
then checked against the pipeline on random rows; if anything differs (a future encoder that mixes
questions, say), the scorer falls back to the pipeline, slower but never wrong.

The classifier, the calibration and the SHAP explainer are the model's own
(:func:`heartrisk.model.estimator.classifier_margin`, :func:`heartrisk.model.explain.raw_contributions`),
so risks and contributions equal ``LoadedModel.predict_proba`` and ``LoadedModel.explain`` (a test
holds them to it).
Two shortcuts, checked the same way at load against the family's reference
(:func:`heartrisk.model.explain.reference_contributions`): a LightGBM model is scored and explained by
its compiled trees (:mod:`heartrisk.model.tree_shap`; LightGBM's booster on one thread if they cannot
be compiled), and a logistic regression (with its scaler) is computed with numpy. The scikit-learn
wrappers re-validate their input (about 1 ms a call), and OpenMP teams started by several request
threads at once on 2 cores only get in each other's way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from heartrisk.features import FEATURE_NAMES, FEATURES, Feature
from heartrisk.model.context import HealthyCurves, RiskContext, contexts, contexts_and_rows
from heartrisk.model.estimator import RiskModel, classifier_margin, model_input, sigmoid, transform
from heartrisk.model.explain import calibrated, compiled_trees, reference_contributions
from heartrisk.model.registry import LoadedModel

log = logging.getLogger(__name__)

#: Random rows the compiled encoder must reproduce exactly before it is used.
CHECK_ROWS = 256
#: A one-row answer cheaper than this (ms) is computed on the event loop, not in a worker thread.
#: Handing a request to a thread cost more than the work it moved: with the compiled LightGBM paths
#: the same load took 2.0-2.7 ms of server CPU a request through the thread pool and 1.2-2.0 ms on the
#: loop, at about 1.6x the requests a second (A/B on the same server build, docs/web.md#speed).
INLINE_MS = 5.0
_TOLERANCE = 1e-9


@dataclass
class Scored:
    """Risks of a batch of rows and, when asked, per-question contributions (log-odds)."""

    probabilities: np.ndarray
    contributions: np.ndarray | None = None  # rows x FEATURE_NAMES
    base_value: float | None = None


@dataclass
class CompiledEncoder:
    """Answers -> encoded (pre-scaling) columns, by table lookup; see the module docstring.

    Every answer of every question is one full-width row of ``answer_rows`` (its encoded values in its
    question's columns, zeros elsewhere), so a person's categorical answers are one fancy index and a
    sum (adding zeros is exact); numbers are written into their columns after. One np.stack per
    question cost 13 array builds a request (15 % of a request's CPU, cProfile).
    """

    width: int
    numeric: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (column, imputed)
    categorical: dict[str, tuple[np.ndarray, dict[Any, np.ndarray]]] = field(default_factory=dict)
    answer_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    answer_index: dict[str, dict[Any, int]] = field(default_factory=dict)

    def add(self, name: str, columns: np.ndarray, table: dict[Any, np.ndarray]) -> None:
        self.categorical[name] = (columns, table)
        start = len(self.answer_rows)
        rows = np.zeros((len(table), self.width))
        for k, encoded in enumerate(table.values()):
            rows[k, columns] = encoded
        self.answer_rows = np.vstack([self.answer_rows.reshape(-1, self.width), rows])
        self.answer_index[name] = {answer: start + k for k, answer in enumerate(table)}

    def encode(self, rows: list[dict[str, Any]]) -> np.ndarray:
        picks = [[index[r.get(name)] for name, index in self.answer_index.items()] for r in rows]
        out = self.answer_rows[picks].sum(axis=1)
        for name, (column, imputed) in self.numeric.items():
            out[:, column] = [imputed if r.get(name) is None else float(r[name]) for r in rows]
        return out

    def encode_columns(self, columns: dict[str, list[Any]], n: int) -> np.ndarray:
        """Answers given column by column (``n`` rows, e.g. a request's ~20 context rows): the same
        lookup as :meth:`encode` without building a dict per row."""
        picks = np.array([_column_picks(index, columns[name], n)
                          for name, index in self.answer_index.items()],
                         dtype=np.intp).reshape(len(self.answer_index), n).T
        out = self.answer_rows[picks].sum(axis=1) if self.answer_index else np.zeros((n, self.width))
        for name, (column, imputed) in self.numeric.items():
            out[:, column] = [imputed if v is None else float(v) for v in columns[name]]
        return out


def _column_picks(index: dict[Any, int], column: list[Any], n: int) -> list[int]:
    """The answer rows of one question's column; most columns of a request repeat one answer."""
    first = column[0]
    if column.count(first) == n:
        return [index[first]] * n
    return [index[v] for v in column]


def _pipeline_encode(model: RiskModel, rows: list[dict[str, Any]]) -> np.ndarray:
    """Encoded (not yet scaled) columns from the pipeline's own encoder step."""
    encode = model.pipeline.named_steps["encode"]
    return np.asarray(encode.transform(model_input(_frame(rows), validate=False)), dtype=float)


def compile_encoder(model: RiskModel) -> CompiledEncoder:
    """Probe the pipeline's encoder with every answer of every question; build the lookup tables."""
    owners = np.array(model.encoded_features())
    encoder = CompiledEncoder(width=len(owners))
    blank: dict[str, Any] = dict.fromkeys(FEATURE_NAMES)
    imputed = model.imputation()
    for f in FEATURES:
        columns = np.flatnonzero(owners == f.name)
        if f.is_numeric:
            if len(columns) != 1:
                raise ValueError(f"{f.name} is encoded into {len(columns)} columns, expected 1")
            encoder.numeric[f.name] = (int(columns[0]), float(imputed[f.name]))
            continue
        answers: list[Any] = [*f.values, None]
        encoded = _pipeline_encode(model, [{**blank, f.name: a} for a in answers])[:, columns]
        encoder.add(f.name, columns, dict(zip(answers, encoded, strict=True)))
    return encoder


def random_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid answers drawn at random, a quarter of them Unknown: the encoder's check set."""
    rng = np.random.default_rng(seed)

    def draw(f: Feature) -> Any:
        if rng.random() < 0.25:
            return None
        if f.is_numeric:
            value = rng.uniform(f.low, f.high)
            return float(round(value)) if f.whole else float(value)
        return f.values[rng.integers(len(f.values))]

    return [{f.name: draw(f) for f in FEATURES} for _ in range(n)]


def _near(n: int, seed: int = 2) -> list[dict[str, Any]]:
    """A person and ``n - 1`` rows that change one to four of their answers, as a request's context
    rows do (what :meth:`TreePath.margin_near` is fast for)."""
    rng = np.random.default_rng(seed)
    person, others = random_rows(1, seed)[0], random_rows(n - 1, seed + 1)
    rows = [person]
    for other in others:
        changed = rng.choice(len(FEATURES), rng.integers(1, 5), replace=False)
        rows.append({**person, **{FEATURES[i].name: other[FEATURES[i].name] for i in changed}})
    return rows


class _Path:
    """What every way to the model gives: :meth:`margin` and :meth:`contributions` (each class),
    and the context's rows, which only the compiled trees score faster than row by row."""

    def margin(self, Xt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def contributions(self, Xt: np.ndarray) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def margin_near(self, Xt: np.ndarray) -> np.ndarray:
        """Margins of rows that mostly repeat the first (a request's context rows)."""
        return self.margin(Xt)

    def margin_near_explained(self, Xt: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """:meth:`margin_near`, and the first row's contributions and base value."""
        values, base = self.contributions(Xt[:1])
        return self.margin_near(Xt), values[0], base


class LinearPath(_Path):
    """A logistic regression's margin and SHAP values (``coef * (x - mean x)``) with plain numpy."""

    def __init__(self, model: RiskModel) -> None:
        clf = model.pipeline.named_steps["classify"]
        self.coef = clf.coef_[0].astype(float)
        self.intercept = float(clf.intercept_[0])
        background = model.background if model.background is not None else np.zeros(len(self.coef))
        self.background = np.asarray(background, dtype=float)

    def margin(self, Xt: np.ndarray) -> np.ndarray:
        return Xt @ self.coef + self.intercept

    def contributions(self, Xt: np.ndarray) -> tuple[np.ndarray, float]:
        return self.coef * (Xt - self.background), self.intercept + float(self.coef @ self.background)


class TreePath(_Path):
    """A LightGBM model's margin and TreeSHAP from its compiled trees (numba, no GIL held)."""

    def __init__(self, model: RiskModel) -> None:
        trees = compiled_trees(model)
        if trees is None:
            raise ValueError("the booster could not be compiled")
        self.trees = trees

    def margin(self, Xt: np.ndarray) -> np.ndarray:
        return self.trees.margin(Xt)

    def margin_near(self, Xt: np.ndarray) -> np.ndarray:
        """Rows that mostly repeat the first (a request's context rows): see CompiledTrees."""
        return self.trees.margin_near(Xt)

    def margin_near_explained(self, Xt: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        return self.trees.margin_near_explained(Xt)

    def contributions(self, Xt: np.ndarray) -> tuple[np.ndarray, float]:
        return self.trees.contributions(Xt)


class BoosterPath(_Path):
    """A LightGBM model asked through its booster, on the calling thread only."""

    def __init__(self, model: RiskModel) -> None:
        self.booster = model.pipeline.named_steps["classify"].booster_

    def margin(self, Xt: np.ndarray) -> np.ndarray:
        return self.booster.predict(Xt, raw_score=True, num_threads=1)

    def contributions(self, Xt: np.ndarray) -> tuple[np.ndarray, float]:
        values = self.booster.predict(Xt, pred_contrib=True, num_threads=1)
        return values[:, :-1], float(values[0, -1])


class ModelPath(_Path):
    """The model's own functions: always right, slower."""

    def __init__(self, model: RiskModel) -> None:
        self.model = model
        self.classifier = model.pipeline.named_steps["classify"]

    def margin(self, Xt: np.ndarray) -> np.ndarray:
        return classifier_margin(self.classifier, Xt)

    def contributions(self, Xt: np.ndarray) -> tuple[np.ndarray, float]:
        return reference_contributions(self.model, Xt)


def _same(a: np.ndarray | float, b: np.ndarray | float) -> bool:
    return bool(np.allclose(a, b, rtol=0, atol=_TOLERANCE))


class Scorer:
    """Scores and explains rows of answers with one loaded model, as fast as it safely can."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self._scale_step = self.model.pipeline.named_steps["scale"]
        self.imputation = loaded.imputation()
        #: Read once: an older version's calibration is rebuilt on every access of the model's property,
        #: and the healthy curves keep their risks per calibration object.
        self.calibration = self.model.calibration
        #: The version's survey aggregates (issue 17), read once per version; None for older versions.
        self.reference = loaded.reference
        self.encoder = self._checked_encoder()
        self.path = self._checked_path()
        #: The healthy profile's margins per (sex, race), scored on first use and kept with the version.
        self.curves = HealthyCurves(self.margins)
        self._cost_ms: dict[tuple[bool, bool], float] | None = None

    @property
    def compiled(self) -> bool:
        """True when answers are encoded by lookup tables rather than the pipeline."""
        return self.encoder is not None

    @property
    def fast(self) -> bool:
        """True when the encoder and the model both take a shortcut (see the module docstring)."""
        return self.compiled and not isinstance(self.path, ModelPath)

    def cheap(self, with_explanations: bool, with_context: bool = False) -> bool:
        """True when scoring one row costs less than handing it to a worker thread would.

        Measured once at load (the median of a few one-row calls). The API computes cheap answers
        on the event loop and sends dear ones (a forest explained by the model's own code: tens of
        ms) to the thread pool, so they never hold up the loop. Moving a compiled model's few
        hundred microseconds to a thread only added GIL hand-offs between threads (see
        :data:`INLINE_MS`).
        """
        if self._cost_ms is None:
            self._cost_ms = {(explain, context): _median_ms(lambda e=explain, c=context: self._one(e, c))
                             for explain in (True, False) for context in (True, False)}
        return self.fast and self._cost_ms[with_explanations, with_context] < INLINE_MS

    def _one(self, with_explanations: bool, with_context: bool) -> None:
        if with_context:
            self.score_in_context([{}], with_explanations)
        else:
            self.score([{}], with_explanations)

    def _checked_encoder(self) -> CompiledEncoder | None:
        try:
            encoder = compile_encoder(self.model)
            rows = random_rows(CHECK_ROWS)
            reference = transform(self.model.pipeline, model_input(_frame(rows), validate=False))
            if _same(self._scaled(encoder.encode(rows)), reference):
                return encoder
            log.warning("model %s: compiled encoder differs from the pipeline; using the pipeline",
                        self.loaded.version)
        except Exception:
            log.exception("model %s: cannot compile its encoder; using the pipeline",
                          self.loaded.version)
        return None

    def _checked_path(self) -> _Path:
        """The fastest way to the margin and SHAP values that agrees with the model's own."""
        reference = ModelPath(self.model)
        classifier = reference.classifier
        candidates: tuple[type, ...] = (
            (TreePath, BoosterPath) if isinstance(classifier, LGBMClassifier)
            else (LinearPath,) if isinstance(classifier, LogisticRegression) else ())
        for fast in candidates:
            path = self._agreeing(fast, reference)
            if path is not None:
                return path
        return reference

    def _agreeing(self, fast: type, reference: ModelPath) -> Any:
        """``fast(model)`` if its margins and contributions equal the reference's on random rows."""
        try:
            candidate = fast(self.model)
            Xt = self.encoded(random_rows(CHECK_ROWS, seed=1))
            values, base = candidate.contributions(Xt)
            expected_values, expected_base = reference.contributions(Xt)
            expected_margin = reference.margin(Xt)
            near = self.encoded(_near(CHECK_ROWS))  # a request's context rows
            near_margin, first_values, first_base = candidate.margin_near_explained(near)
            expected_first, _ = reference.contributions(near[:1])
            if (_same(candidate.margin(Xt), expected_margin) and _same(values, expected_values)
                    and _same(base, expected_base) and _same(candidate.margin_near(Xt), expected_margin)
                    and _same(near_margin, reference.margin(near)) and _same(first_values, expected_first[0])
                    and _same(first_base, expected_base)):
                return candidate
            log.warning("model %s: %s differs from the model; not used", self.loaded.version,
                        fast.__name__)
        except Exception:
            log.exception("model %s: %s failed; not used", self.loaded.version, fast.__name__)
        return None

    def _scaled(self, Xt: np.ndarray) -> np.ndarray:
        scale = self._scale_step
        if isinstance(scale, str):
            return Xt
        if isinstance(scale, StandardScaler):
            mean = scale.mean_ if scale.with_mean else 0.0
            spread = scale.scale_ if scale.with_std else 1.0
            return (Xt - mean) / spread
        return scale.transform(Xt)

    def encoded(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Rows as the classifier sees them (imputed, encoded, scaled)."""
        if self.encoder is None:
            return transform(self.model.pipeline, model_input(_frame(rows), validate=False))
        return self._scaled(self.encoder.encode(rows))

    def margins(self, columns: dict[str, list[Any]], n: int) -> np.ndarray:
        """Uncalibrated log-odds of ``n`` rows given column by column: the one call that scores a
        request's extra rows (:mod:`heartrisk.model.context`)."""
        if self.encoder is None:
            return self.path.margin(transform(self.model.pipeline, model_input(
                pd.DataFrame(columns, columns=list(FEATURE_NAMES)), validate=False)))
        return self.path.margin_near(self._scaled(self.encoder.encode_columns(columns, n)))

    def contexts(self, rows: list[dict[str, Any]]) -> list[RiskContext] | None:
        """Each row's risk in context (:mod:`heartrisk.model.context`), or None when the version
        was trained before it stored a survey reference."""
        if self.reference is None:
            return None
        return contexts(rows, self.margins, self.calibration, self.imputation, self.reference,
                        self.curves)

    def score(self, rows: list[dict[str, Any]], with_explanations: bool = True) -> Scored:
        """Calibrated risks and, if asked, per-question contributions for rows of answers."""
        Xt = self.encoded(rows)
        return self._scored(Xt, self.path.margin(Xt), with_explanations)

    def score_in_context(self, rows: list[dict[str, Any]],
                         with_explanations: bool = True) -> tuple[Scored, list[RiskContext] | None]:
        """:meth:`score` and :meth:`contexts` together: the person's own row is the first of the
        rows the context scores, so it is encoded and scored once, and a single person's
        explanation comes from the same decisions of the trees (about 0.07 ms of a request)."""
        if self.reference is None or self.encoder is None:
            return self.score(rows, with_explanations), self.contexts(rows)
        encoder = self.encoder
        batch: dict[str, Any] = {}
        explain_first = with_explanations and len(rows) == 1

        def margins(columns: dict[str, list[Any]], n: int) -> np.ndarray:
            Xt = batch["Xt"] = self._scaled(encoder.encode_columns(columns, n))
            if explain_first:
                found, values, base = self.path.margin_near_explained(Xt)
                batch["explained"] = values[None, :], base
            else:
                found = self.path.margin_near(Xt)
            batch["margin"] = found
            return found

        found, starts = contexts_and_rows(rows, margins, self.calibration, self.imputation,
                                          self.reference, self.curves)
        scored = self._scored(batch["Xt"][starts], batch["margin"][starts], with_explanations,
                              batch.get("explained"))
        return scored, found

    def _scored(self, Xt: np.ndarray, margin: np.ndarray, with_explanations: bool,
                explained: tuple[np.ndarray, float] | None = None) -> Scored:
        probabilities = sigmoid(self.calibration(margin))
        if not with_explanations:
            return Scored(probabilities)
        values, base = explained or self.path.contributions(Xt)
        grouped, calibrated_base = calibrated(self.model, values, base)
        return Scored(probabilities, grouped, calibrated_base)


def _median_ms(call: Any, repeats: int = 15) -> float:
    """Median CPU time of ``call`` on this thread: what the work costs, not how long it waited. The
    model cache measures it while the server runs; wall time there counted the wait for the GIL and
    sent the same model to the loop on a quiet server and to the thread pool under load."""
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        call()
        times.append((time.thread_time() - started) * 1000)
    return float(np.median(times))


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{n: r.get(n) for n in FEATURE_NAMES} for r in rows], columns=list(FEATURE_NAMES))
