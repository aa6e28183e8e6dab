"""The CTGAN synthesizer: fitted on real rows, kept at its best epoch, sampling valid rows only.

Three habits of CTGAN on this data shape the module (DESIGN.md, pitfalls):

* it leaves a column's range and never gives whole day counts, so every generated batch goes through
  :func:`repair` (clip to the range seen in the real data, round to its precision, snap categories)
  or is rejected, and what comes out passes the feature spec;
* its quality swings between epochs and its positive rate drifts, so :func:`fit_synthesizer` scores a
  sample every ``score_every`` epochs and keeps the best generator, and :meth:`Synthesizer.sample`
  draws positives and negatives separately (conditional sampling on the label) to hit a set rate;
* torch threads busy-wait next to other OpenMP users, so the fit runs on ``torch_threads`` threads.

torch, ctgan, sdmetrics and LightGBM are imported inside the functions that need them: importing this
module (for its settings and errors) stays cheap.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from heartrisk.clock import utc_now
from heartrisk.errors import UserError
from heartrisk.features import CATEGORICAL_FEATURES, FEATURE_NAMES, FEATURES, LABEL, NUMERIC_FEATURES
from heartrisk.files import sha256
from heartrisk.validation import coerce

#: Bumped when the saved layout changes; a loader refuses layouts it does not know.
FORMAT_VERSION = 1
MODEL_FILE = "ctgan.pt"
INFO_FILE = "synthesizer.json"
#: Sampling draws rows in rounds until each label has its count (repair may reject rows, one label
#: may be rare), up to this many draws per row wanted (plus 10,000), in batches of at most
#: MAX_BATCH_ROWS.
MAX_DRAWS_PER_ROW = 200
MAX_BATCH_ROWS = 100_000
#: The most rows one call may ask for; more is almost certainly a typo (and memory).
MAX_SAMPLE_ROWS = 1_000_000
#: Synthetic rows the classifier of a snapshot score is trained on (at most the fit's rows).
SNAPSHOT_TRAIN_ROWS = 10_000
#: What the generated label column holds (CTGAN's discrete columns are strings here).
LABEL_TEXT = {True: "Yes", False: "No"}


class SynthError(UserError, ValueError):
    """The synthesizer cannot do what was asked; the message says what to change."""


class SynthSettings(BaseModel):
    """Knobs of one synthesizer fit. Defaults take about 5 minutes on 2 cores (docs/synthetic.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(20_000, ge=100, le=2_000_000, description="real rows the CTGAN is fitted on")
    epochs: int = Field(200, ge=1, le=10_000, description="training epochs")
    batch_size: int = Field(500, ge=20, le=20_000, description="CTGAN batch (a multiple of 10)")
    score_every: int = Field(25, ge=1, description="score a sample every this many epochs")
    score_rows: int = Field(5_000, ge=50, description="held-out real rows that score snapshots")
    eval_rows: int = Field(10_000, ge=100, description="held-out real rows for the quality report")
    test_size: float = Field(0.2, gt=0, lt=1, description="share of real records held out (view split)")
    split_seed: int = Field(42, description="seed of the view split (same as the classifier's)")
    seed: int = Field(0, description="seed of sampling, fitting and the TSTR classifier")
    torch_threads: int = Field(1, ge=1, le=256, description="torch threads (1 avoids busy-waiting)")
    promote_tolerance: float = Field(0.01, ge=0, le=1, description=(
        "champion gate: how far below the champion a new fit may score on quality and on TSTR ROC-AUC "
        "and still be promoted. Room for the noise between fits measured on different held-out rows, "
        "kept small because keeping a comparable fit out costs nothing, while promoting a worse one "
        "feeds worse rows into `heart` every day"))

    @field_validator("batch_size")
    @classmethod
    def _pac_multiple(cls, value: int) -> int:
        if value % 10:
            raise ValueError("must be a multiple of 10 (CTGAN groups 10 rows per discriminator input)")
        return value

    @classmethod
    def quick(cls, **overrides: Any) -> SynthSettings:
        """A fit of a few seconds, for tests and smoke runs (quality is poor, the plumbing is real)."""
        values: dict[str, Any] = {"rows": 2_000, "epochs": 2, "score_every": 1, "score_rows": 300,
                                  "eval_rows": 800}
        return cls(**{**values, **overrides})


# ---------------------------------------------------------------------------------------- repair
@dataclass
class Repaired:
    """Valid rows (spec names, typed as validation makes them) and what it took to get them."""

    frame: pd.DataFrame
    drawn: int
    repaired: int
    rejected: int
    out_of_range: int = 0


def _normal(text: object) -> str | None:
    return " ".join(text.split()).casefold() if isinstance(text, str) else None


def _snap(column: pd.Series, allowed: tuple[str, ...]) -> pd.Series:
    """Each cell as the allowed value it spells (case and spacing aside), else None."""
    lookup = {_normal(v): v for v in allowed}
    return column.map(lambda cell: lookup.get(_normal(cell))).astype(object)


def _label(column: pd.Series) -> pd.Series:
    """The generated label as True/False; anything else becomes NA (the row is rejected)."""
    lookup = {"yes": True, "no": False, "true": True, "false": False}

    def one(cell: object) -> object:
        if isinstance(cell, (bool, np.bool_)):
            return bool(cell)
        return lookup.get(_normal(cell) or "")

    return column.map(one).astype("boolean")


def repair(raw: pd.DataFrame, bounds: Mapping[str, tuple[float, float]],
           precision: Mapping[str, int]) -> Repaired:
    """Make generated rows valid by the spec, or drop them.

    Numbers are clipped to ``bounds`` (the real data's range, inside the spec's) and rounded to the
    real data's ``precision`` (whole features always to 0 decimals); categories are snapped to the
    allowed value they spell. A row counts as *repaired* when it broke the spec before (out of range,
    a fractional day count, a misspelt category) and as *rejected* when it cannot be repaired (no
    number, an unknown category, no label). The kept rows are checked by the spec once more.
    """
    raw = raw.reset_index(drop=True)
    fixed = np.zeros(len(raw), dtype=bool)
    beyond = np.zeros(len(raw), dtype=bool)
    bad = np.zeros(len(raw), dtype=bool)
    out: dict[str, Any] = {}
    for spec in FEATURES:
        if spec.is_numeric:
            values = pd.to_numeric(raw[spec.name], errors="coerce").to_numpy(dtype=float)
            finite = np.isfinite(values)
            outside = finite & ((values < spec.low) | (values > spec.high))
            fractional = finite & spec.whole & (np.abs(values - np.round(values)) > 1e-9)
            low, high = bounds[spec.name]
            decimals = 0 if spec.whole else precision.get(spec.name, 6)
            out[spec.name] = np.round(np.clip(values, low, high), decimals)
            bad |= ~finite
            beyond |= outside
            fixed |= outside | fractional
        else:
            snapped = _snap(raw[spec.name], spec.values)
            bad |= snapped.isna().to_numpy()
            fixed |= (snapped.notna() & (snapped != raw[spec.name])).to_numpy()
            out[spec.name] = snapped
    label = _label(raw[LABEL.name])
    bad |= label.isna().to_numpy()
    frame = pd.DataFrame(out)
    frame[LABEL.name] = label
    kept = frame[~bad].reset_index(drop=True)
    kept[LABEL.name] = kept[LABEL.name].astype(bool)
    typed = coerce(kept, label="required").raise_if_any("repaired synthetic rows")
    return Repaired(typed, drawn=len(raw), repaired=int((fixed & ~bad).sum()), rejected=int(bad.sum()),
                    out_of_range=int((beyond & ~bad).sum()))


# ---------------------------------------------------------------------------------------- the model
@dataclass
class SynthInfo:
    """What a fitted synthesizer needs besides its weights, saved next to them as JSON."""

    feature_names: list[str]
    label: str
    bounds: dict[str, tuple[float, float]]
    precision: dict[str, int]
    positive_rate: float
    fit_rows: int
    epochs: int
    best_epoch: int
    best_score: float | None
    trained_at: str
    settings: dict[str, Any]
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, text: str) -> SynthInfo:
        data = json.loads(text)
        data["bounds"] = {k: (float(v[0]), float(v[1])) for k, v in data["bounds"].items()}
        return cls(**data)


@dataclass
class Sample:
    """Exactly the rows asked for, and the sampling effort behind them."""

    frame: pd.DataFrame
    drawn: int = 0
    repaired: int = 0
    rejected: int = 0

    @property
    def positive_rate(self) -> float:
        return float(self.frame[LABEL.name].mean()) if len(self.frame) else 0.0


class Synthesizer:
    """A fitted CTGAN plus the facts about the real data that make its rows valid."""

    def __init__(self, model: Any, info: SynthInfo) -> None:
        self.model = model
        self.info = info

    # -------------------------------------------------------------- sampling
    def sample_raw(self, n: int, positive: bool | None = None) -> pd.DataFrame:
        """CTGAN's own output (unrepaired), optionally conditioned on the label (CTGAN's way)."""
        import torch

        with torch.no_grad():
            if positive is None:
                return self.model.sample(n)
            return self.model.sample(n, LABEL.name, LABEL_TEXT[positive])

    def sample(self, n: int, *, positive_rate: float | None = None, seed: int | None = None) -> Sample:
        """``n`` valid rows, ``round(n * positive_rate)`` of them positive (default: the real rate).

        Rows are drawn unconditionally, repaired, and kept by their own label until both counts are
        met (rejection sampling on the label). Conditioning CTGAN on the label instead was measured
        to weaken the label's link to the answers (TSTR ROC-AUC 0.725 against 0.79; docs/synthetic.md).
        With a ``seed`` the rows are reproducible (the daily job seeds with its run id).
        """
        check_row_count(n)
        rate = self.info.positive_rate if positive_rate is None else positive_rate
        if not 0.0 <= rate <= 1.0:
            raise SynthError(f"positive rate {rate!r} must be between 0 and 1")
        if seed is not None:
            self.model.set_random_state(int(seed) % (2**32))
        positives = int(np.floor(n * rate + 0.5))
        total = Sample(pd.DataFrame())
        frame = self._draw({True: positives, False: n - positives}, total)
        order = np.random.default_rng(seed).permutation(len(frame))
        total.frame = frame.iloc[order].reset_index(drop=True)
        return total

    def _draw(self, wanted: dict[bool, int], tally: Sample) -> pd.DataFrame:
        """Valid rows, ``wanted[label]`` of each label, drawn in rounds sized by the label shares seen.

        Gives up with a clear error after :data:`MAX_DRAWS_PER_ROW` draws per wanted row (a
        synthesizer that hardly ever produces one of the labels).
        """
        kept: dict[bool, list[pd.DataFrame]] = {True: [], False: []}
        have = {True: 0, False: 0}
        seen = {True: 0, False: 0}
        share = {True: self.info.positive_rate or 0.5, False: 1 - (self.info.positive_rate or 0.5)}
        drawn = 0
        limit = MAX_DRAWS_PER_ROW * sum(wanted.values()) + 10_000
        while any(have[k] < wanted[k] for k in have) and drawn < limit:
            need = max((wanted[k] - have[k]) / max(share[k], 1e-3) for k in have if have[k] < wanted[k])
            size = int(min(max(1.2 * need, 64), MAX_BATCH_ROWS, limit - drawn + 64))
            fixed = repair(self.sample_raw(size), self.info.bounds, self.info.precision)
            for label in (True, False):
                rows = fixed.frame[fixed.frame[LABEL.name] == label]
                take = rows.iloc[:max(wanted[label] - have[label], 0)]
                kept[label].append(take)
                have[label] += len(take)
                seen[label] += len(rows)
            tally.drawn += fixed.drawn
            tally.repaired += fixed.repaired
            tally.rejected += fixed.rejected
            drawn += size
            share = {k: seen[k] / drawn for k in seen}
        short = [k for k in have if have[k] < wanted[k]]
        if short:
            label = short[0]
            raise SynthError(
                f"the synthesizer gave {have[label]:,} of {wanted[label]:,} valid rows with "
                f"{LABEL.name}={label} in {drawn:,} draws ({share[label]:.2%} of its rows have that label, "
                f"{tally.rejected:,} rows rejected); ask for another positive rate, or retrain it with "
                "`heartrisk synth train` (more epochs or rows)"
            )
        parts = [part for label in (True, False) for part in kept[label] if len(part)]
        return pd.concat(parts, ignore_index=True) if parts else _empty_rows()

    # -------------------------------------------------------------- persistence
    def save(self, folder: Path) -> str:
        """Write the weights and the info into ``folder``; returns the weights' sha256."""
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        self.model.set_device(torch.device("cpu"))
        torch.save(self.model, folder / MODEL_FILE)
        (folder / INFO_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return sha256(folder / MODEL_FILE)

    @classmethod
    def load(cls, folder: Path, expected_sha256: str | None = None) -> Synthesizer:
        """Read a saved synthesizer, refusing anything damaged or made for another feature spec.

        The weights are a pickle (torch.save of the CTGAN object): load only from a registry you trust.
        """
        import torch

        model_path, info_path = folder / MODEL_FILE, folder / INFO_FILE
        for path in (model_path, info_path):
            if not path.is_file():
                raise SynthError(f"{path.name} is missing from {folder}")
        if expected_sha256 and sha256(model_path) != expected_sha256:
            raise SynthError(f"{model_path.name} does not match the checksum recorded at registration")
        try:
            info = SynthInfo.from_json(info_path.read_text())
        except (ValueError, TypeError, KeyError) as exc:
            raise SynthError(f"{info_path.name} is unreadable: {exc}") from None
        if info.format_version != FORMAT_VERSION:
            raise SynthError(f"saved format {info.format_version} is not {FORMAT_VERSION}")
        if info.feature_names != list(FEATURE_NAMES) or info.label != LABEL.name:
            raise SynthError("it was trained for a different feature spec")
        try:
            model = torch.load(model_path, weights_only=False, map_location="cpu")
        except Exception as exc:
            raise SynthError(f"{model_path.name} cannot be read: {type(exc).__name__}: {exc}") from None
        if getattr(model, "_generator", None) is None or getattr(model, "_transformer", None) is None:
            raise SynthError(f"{model_path.name} does not hold a fitted CTGAN")
        model.set_device(torch.device("cpu"))
        return cls(model, info)


def check_row_count(n: object) -> int:
    """A row count a person could mean: a whole number from 0 to :data:`MAX_SAMPLE_ROWS`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise SynthError(f"the number of synthetic rows must be a whole number, not {n!r}")
    if n < 0 or n > MAX_SAMPLE_ROWS:
        raise SynthError(f"the number of synthetic rows must be from 0 to {MAX_SAMPLE_ROWS:,}, not {n:,}")
    return int(n)


def _empty_rows() -> pd.DataFrame:
    empty = pd.DataFrame({name: pd.Series(dtype=float if name in NUMERIC_FEATURES else object)
                          for name in FEATURE_NAMES})
    empty[LABEL.name] = pd.Series(dtype="boolean")
    return empty


# ---------------------------------------------------------------------------------------- fitting
def training_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Spec-typed rows as CTGAN takes them: complete rows only, the label as 'Yes'/'No' text.

    CTGAN cannot fit numbers with gaps, and synthetic rows should not invent "Unknown" answers.
    """
    columns = [*FEATURE_NAMES, LABEL.name]
    complete = frame[columns].dropna().reset_index(drop=True)
    out = complete[list(FEATURE_NAMES)].copy()
    for name in CATEGORICAL_FEATURES:
        out[name] = out[name].astype(str)
    out[LABEL.name] = complete[LABEL.name].astype(bool).map(LABEL_TEXT).astype(object)
    return out


def data_bounds(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each number's range in the real rows, kept inside the spec's range."""
    bounds = {}
    for spec in FEATURES:
        if spec.is_numeric:
            values = frame[spec.name].dropna()
            low = max(float(values.min()), spec.low) if len(values) else spec.low
            high = min(float(values.max()), spec.high) if len(values) else spec.high
            bounds[spec.name] = (float(low), float(high))
    return bounds


def data_precision(frame: pd.DataFrame, most: int = 6) -> dict[str, int]:
    """Decimals each number is given with in the real rows (BMI 2, hours 0), so samples look alike."""
    precision = {}
    for spec in FEATURES:
        if spec.is_numeric:
            values = frame[spec.name].dropna().to_numpy(dtype=float)
            precision[spec.name] = next(
                (d for d in range(most + 1) if np.allclose(values, np.round(values, d), rtol=0, atol=1e-9)),
                most,
            )
    return precision


@dataclass
class EpochReport:
    """What one finished epoch looked like, passed to the progress callback."""

    epoch: int
    epochs: int
    generator_loss: float
    discriminator_loss: float
    score: float | None = None
    best_score: float | None = None
    best_epoch: int = 0
    seconds: float = 0.0
    quality: float | None = None
    tstr: float | None = None
    note: str = ""


@dataclass
class FitResult:
    """The synthesizer at its best epoch and the training trace behind the choice."""

    synthesizer: Synthesizer
    history: list[EpochReport] = field(default_factory=list)
    fit_seconds: float = 0.0
    prepare_seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        times = [r.seconds for r in self.history]
        return float(np.median(times)) if times else 0.0


class _EpochIterator:
    """Stands in for the tqdm bar CTGAN wraps its epoch loop in: calls back after every epoch."""

    def __init__(self, iterable: Any, callback: Callable[[int], None]) -> None:
        self.iterable = iterable
        self.callback = callback

    def __iter__(self) -> Iterator[int]:
        done = 0
        for epoch in self.iterable:
            self.callback(done)  # 0: the data is prepared and the first epoch starts
            yield epoch
            done += 1
        if done:
            self.callback(done)

    def set_description(self, _description: str) -> None:
        """CTGAN's verbose mode writes losses here; the callback reports them instead."""


@contextmanager
def _epoch_hook(callback: Callable[[int], None]) -> Iterator[None]:
    """Route CTGAN's epoch loop through :class:`_EpochIterator` while one fit runs.

    ctgan offers no per-epoch callback; its loop iterates over ``tqdm(range(epochs))``, looked up in
    its module at call time, so that name is swapped for the duration of the fit (and restored).
    """
    import ctgan.synthesizers.ctgan as ctgan_module

    original = ctgan_module.tqdm
    ctgan_module.tqdm = lambda iterable, *args, **kwargs: _EpochIterator(iterable, callback)
    try:
        yield
    finally:
        ctgan_module.tqdm = original


def fit_synthesizer(
    real: pd.DataFrame,
    selection: pd.DataFrame,
    settings: SynthSettings,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> FitResult:
    """Fit a CTGAN on ``real`` rows, scoring a sample against ``selection`` rows every few epochs.

    ``selection`` must be real rows the fit does not see (and not the rows the final quality is
    measured on, or that figure would flatter the chosen snapshot). The generator of the best-scored
    epoch is kept; the last epoch is always scored.
    """
    import joblib
    import torch
    from ctgan import CTGAN

    started = time.perf_counter()
    torch.set_num_threads(settings.torch_threads)
    train = training_frame(real)
    if len(train) < settings.batch_size:
        raise SynthError(f"{len(train)} complete real rows are too few to fit on; need at least "
                         f"{settings.batch_size} (the batch size)")
    model = CTGAN(epochs=settings.epochs, batch_size=settings.batch_size, enable_gpu=False)
    model.set_random_state(settings.seed)
    info = SynthInfo(
        feature_names=list(FEATURE_NAMES), label=LABEL.name, bounds=data_bounds(real),
        precision=data_precision(real), positive_rate=float((train[LABEL.name] == "Yes").mean()),
        fit_rows=len(train), epochs=settings.epochs, best_epoch=0, best_score=None,
        trained_at=utc_now().isoformat(), settings=settings.model_dump(),
    )
    synth = Synthesizer(model, info)
    result = FitResult(synth)
    best: dict[str, Any] = {"score": None, "epoch": 0, "state": None}
    last_tick = [started]

    def after_epoch(done: int) -> None:
        now = time.perf_counter()
        if done == 0:
            result.prepare_seconds = now - started
            last_tick[0] = now
            return
        losses = model.loss_values.iloc[-1]
        report = EpochReport(done, settings.epochs, float(losses["Generator Loss"]),
                             float(losses["Discriminator Loss"]), seconds=now - last_tick[0])
        if done % settings.score_every == 0 or done == settings.epochs:
            try:
                report.score, report.quality, report.tstr = snapshot_score(
                    synth, selection.iloc[:settings.score_rows], min(settings.rows, SNAPSHOT_TRAIN_ROWS),
                    seed=settings.seed + done)
            except SynthError as exc:  # this snapshot cannot give rate-matched rows: never chosen
                report.note = str(exc)
            if report.score is not None and (best["score"] is None or report.score > best["score"]):
                best.update(score=report.score, epoch=done,
                            state=copy.deepcopy(model._generator.state_dict()))
        report.best_score, report.best_epoch = best["score"], best["epoch"]
        result.history.append(report)
        if on_epoch is not None:
            on_epoch(report)
        last_tick[0] = time.perf_counter()

    # CTGAN transforms columns with joblib's process pool: starting it costs ~10 s on 2 cores, more
    # than the work; threads do it without the start-up.
    with _epoch_hook(after_epoch), joblib.parallel_config(backend="threading"):
        model.fit(train, discrete_columns=[*CATEGORICAL_FEATURES, LABEL.name])
    if len(result.history) != settings.epochs:
        raise RuntimeError("ctgan's training loop no longer reports its epochs to heartrisk's hook "
                           f"(saw {len(result.history)} of {settings.epochs}); check the ctgan version")
    if best["state"] is None:
        raise SynthError("no scored epoch could give valid rows at the real positive rate "
                         f"({result.history[-1].note}); fit more rows or epochs")
    model._generator.load_state_dict(best["state"])
    info.best_epoch, info.best_score = best["epoch"], best["score"]
    result.fit_seconds = time.perf_counter() - started
    return result


def snapshot_score(synth: Synthesizer, real: pd.DataFrame, train_rows: int,
                   seed: int) -> tuple[float, float, float]:
    """How good a snapshot is, as (score, quality, tstr): a few seconds on 2 cores.

    ``quality`` is the SDMetrics overall score of a rate-matched sample against the ``real``
    selection rows; ``tstr`` the ROC-AUC on them of the fixed classifier trained on ``train_rows``
    synthetic rows. The score is their mean: snapshots chosen on quality alone kept the marginals and
    lost the label's link to the answers (TSTR far below TRTR; docs/synthetic.md). Sampling here
    must not disturb training: the global RNG states are put back afterwards.
    """
    import torch

    numpy_state = np.random.get_state()
    with torch.random.fork_rng():
        sample = synth.sample(max(train_rows, len(real)), seed=seed).frame
    np.random.set_state(numpy_state)
    quality = quality_report(real, sample.iloc[:len(real)])["overall"]
    if real[LABEL.name].nunique() < 2:  # too few selection rows to rank: quality alone
        return quality, quality, float("nan")
    tstr = holdout_roc_auc(sample, real, seed)
    return (quality + tstr) / 2, quality, tstr


# ---------------------------------------------------------------------------------------- quality
def sdmetrics_metadata() -> dict[str, Any]:
    """The spec as SDMetrics metadata (one table, ``heart``)."""
    columns = {spec.name: {"sdtype": "numerical" if spec.is_numeric else "categorical"} for spec in FEATURES}
    columns[LABEL.name] = {"sdtype": "boolean"}
    return {"tables": {"heart": {"columns": columns}}}


def _report_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[[*FEATURE_NAMES, LABEL.name]].copy()
    out[LABEL.name] = out[LABEL.name].astype(bool)
    return out.reset_index(drop=True)


def quality_report(real: pd.DataFrame, synthetic: pd.DataFrame, details: bool = False) -> dict[str, Any]:
    """SDMetrics QualityReport (single table): overall, column shapes, column pair trends."""
    from sdmetrics.reports import QualityReport

    report = QualityReport()
    report.generate({"heart": _report_frame(real)}, {"heart": _report_frame(synthetic)},
                    sdmetrics_metadata(), verbose=False)
    scores = dict(zip(report.get_properties()["Property"], report.get_properties()["Score"], strict=True))
    out: dict[str, Any] = {
        "overall": float(report.get_score()),
        "column_shapes": float(scores["Column Shapes"]),
        "column_pair_trends": float(scores["Column Pair Trends"]),
    }
    if details:
        out["column_shapes_detail"] = report.get_details("Column Shapes", table_name="heart")
        out["column_pair_trends_detail"] = report.get_details("Column Pair Trends", table_name="heart")
    return out


def _classifier_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Features for the fixed TSTR classifier: numbers as they are, answers as fixed categories."""
    out = frame[list(FEATURE_NAMES)].copy()
    for spec in FEATURES:
        if spec.is_categorical:
            out[spec.name] = pd.Categorical(out[spec.name], categories=list(spec.values))
    return out


def holdout_roc_auc(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> float:
    """ROC-AUC on ``test`` of a fixed, fast LightGBM fitted on ``train`` (one thread: no OpenMP clash)."""
    from lightgbm import LGBMClassifier
    from sklearn.metrics import roc_auc_score

    model = LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=31, min_child_samples=40,
                           n_jobs=1, random_state=seed, verbose=-1)
    model.fit(_classifier_frame(train), train[LABEL.name].astype(int))
    scores = model.predict_proba(_classifier_frame(test))[:, 1]
    return float(roc_auc_score(test[LABEL.name].astype(int), scores))


@dataclass
class Quality:
    """How close the synthesizer's rows are to real rows it never saw."""

    metrics: dict[str, float]
    column_shapes: pd.DataFrame
    column_pair_trends: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "column_shapes": self.column_shapes.to_dict(orient="records"),
        }


def measure_quality(synth: Synthesizer, fit_rows: pd.DataFrame, eval_rows: pd.DataFrame,
                    seed: int = 0) -> Quality:
    """Every quality figure of one fit, measured on real ``eval_rows`` the fit did not see.

    * SDMetrics QualityReport of a rate-matched sample the size of ``eval_rows``;
    * positive rate: real, the raw (unconditioned) CTGAN output and the rate-matched sample;
    * share of raw rows that needed repair, and that had to be rejected;
    * TSTR: a fixed classifier trained on as many synthetic rows as the fit saw, tested on
      ``eval_rows``, next to TRTR: the same classifier trained on the fit rows themselves.
    """
    started = time.perf_counter()
    matched = synth.sample(len(eval_rows), seed=seed + 1)
    report = quality_report(eval_rows, matched.frame, details=True)
    raw = repair(synth.sample_raw(len(eval_rows)), synth.info.bounds, synth.info.precision)
    tstr_rows = synth.sample(len(fit_rows), seed=seed + 2).frame
    metrics = {
        "quality_overall": report["overall"],
        "quality_column_shapes": report["column_shapes"],
        "quality_column_pair_trends": report["column_pair_trends"],
        "positive_rate_real": float(eval_rows[LABEL.name].astype(bool).mean()),
        "positive_rate_fit": synth.info.positive_rate,
        "positive_rate_synthetic_raw": float(raw.frame[LABEL.name].astype(bool).mean()),
        "positive_rate_synthetic": matched.positive_rate,
        "repaired_share": raw.repaired / raw.drawn,
        "out_of_range_share": raw.out_of_range / raw.drawn,
        "rejected_share": raw.rejected / raw.drawn,
        "tstr_roc_auc": holdout_roc_auc(tstr_rows, eval_rows, seed),
        "trtr_roc_auc": holdout_roc_auc(fit_rows, eval_rows, seed),
        "eval_rows": float(len(eval_rows)),
    }
    metrics["tstr_gap"] = metrics["trtr_roc_auc"] - metrics["tstr_roc_auc"]
    metrics["quality_seconds"] = time.perf_counter() - started
    return Quality(metrics, report["column_shapes_detail"], report["column_pair_trends_detail"])
