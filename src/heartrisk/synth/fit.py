"""Fitting the CTGAN: on real rows, scored every few epochs, kept at its best snapshot.

Habits of CTGAN on this data shape the fit (DESIGN.md, pitfalls; figures from the CTGAN lab of issue
16, bench/results/ctgan_lab.jsonl, and ``bench/synth.py --seeds 3``):

* its raw generator swings from step to step (quality +/-0.03 between epochs, the label's link to the
  answers more), so the fit samples an exponential moving average of the generator's weights
  (:mod:`heartrisk.synth.average`), scores it every ``score_every`` epochs
  (:func:`heartrisk.synth.quality.snapshot_score`) and keeps the best snapshot: the highest TSTR
  among snapshots whose quality reaches ``quality_floor`` (TSTR is the figure that lags);
* it leaves the real data's ranges, so the fit records them (:func:`data_bounds`,
  :func:`data_precision`) for every later sample to be repaired by;
* ctgan draws a batch's real rows in a Python loop: the fit draws them vectorized
  (:mod:`heartrisk.synth.batch_rows`);
* its dropout and Gumbel noise use torch's slow samplers on the CPU: the fit draws both from uniform
  numbers (:mod:`heartrisk.synth.fast_noise`; same distributions, epochs 10 % cheaper);
* torch threads busy-wait next to other OpenMP users, so the fit runs on ``torch_threads`` threads.

torch and ctgan are imported inside :func:`fit_synthesizer`: importing this module (for its settings)
stays cheap.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from heartrisk.clock import utc_now
from heartrisk.features import CATEGORICAL_FEATURES, FEATURE_NAMES, FEATURES, LABEL
from heartrisk.synth.quality import SnapshotScore, snapshot_score
from heartrisk.synth.synthesizer import LABEL_TEXT, SynthError, Synthesizer, SynthInfo


class SynthSettings(BaseModel):
    """Knobs of one synthesizer fit; defaults chosen in the CTGAN lab (docs/synthetic.md, issue 16).

    The defaults aim at a fit of at most 5 minutes on 2 cores in which every seed reaches quality
    >= 0.92 and TSTR within 0.02 of TRTR; ``bench/synth.py --seeds 3`` measures both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(60_000, ge=100, le=2_000_000, description=(
        "real rows the CTGAN is fitted on. At the same 4,800 steps (pac 2), three seeds each, TSTR gap "
        "20,000 x 120 epochs 0.015-0.025, 40,000 x 60 0.011-0.017, 60,000 x 40 0.008-0.015 "
        "(docs/synthetic.md); 10,000 x 240: TSTR 0.79 against 0.82 on 20,000"))
    epochs: int | None = Field(None, ge=1, le=10_000, description=(
        "most training epochs; None (the default): as many as make the fit's 4,800 steps (60,000 rows "
        "x 40 epochs / batch 500) on the rows there are, at least 40 and at most 120. With 60,000 rows "
        "the best snapshot came at epoch 20-40 of 40 (lab and bench/synth.py); more rows at fewer "
        "epochs beat fewer rows at more (docs/synthetic.md). 40 epochs on 2,387 rows fitted far worse "
        "than 120 (TSTR 0.47-0.57 against 0.64-0.71 over 3 seeds; session 6's attack helper)"))
    batch_size: int = Field(500, ge=20, le=20_000, description=(
        "rows per step, a multiple of pac (2,000 with learning rate 1e-3: TSTR 0.63, far worse)"))
    pac: int = Field(2, ge=1, le=50, description=(
        "rows the discriminator judges together (ctgan's default 10: TSTR 0.78-0.81 at 100-200 "
        "epochs; 5: 0.81-0.82 at 140 epochs, gap 0.016-0.023; 2: 0.81-0.82 at 120, gap 0.011-0.018)"))
    generator_lr: float = Field(2e-4, gt=0, le=1, description="generator learning rate (Adam)")
    discriminator_lr: float = Field(4e-4, gt=0, le=1, description=(
        "discriminator learning rate (Adam): twice the generator's reached TSTR 0.81-0.82 in fewer "
        "epochs; 5e-4 for both: TSTR 0.74"))
    ema_decay: float | None = Field(0.999, gt=0, lt=1, description=(
        "decay per generator step of the average of its weights that is sampled and kept; None samples "
        "the raw weights (200 epochs: quality 0.926 raw, 0.958 averaged)"))
    score_every: int = Field(5, ge=1, description="score a snapshot every this many epochs (and the last)")
    score_rows: int = Field(20_000, ge=50, description=(
        "held-out real rows that score snapshots (TSTR is tested on all of them)"))
    score_quality_rows: int = Field(5_000, ge=50, description=(
        "of the score rows, how many the snapshot quality is measured on"))
    score_train_rows: int = Field(10_000, ge=100, description=(
        "synthetic rows the snapshot TSTR classifier is trained on (at most the fit's rows)"))
    score_trees: int = Field(100, ge=10, le=2_000, description=(
        "trees of the snapshot TSTR classifier (the final figure uses 200; 100 halve its cost)"))
    quality_floor: float = Field(0.93, ge=0, le=1, description=(
        "a snapshot is kept only if its quality reaches this (when some snapshot does): selecting on "
        "the mean of quality and TSTR let TSTR lag 0.03 behind TRTR at quality 0.95"))
    patience: int | None = Field(None, ge=1, description=(
        "stop after this many scores in a row without a better snapshot; None trains every epoch "
        "(off by default: in the lab's traces TSTR still rose in the last 10-20 epochs)"))
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

    def for_rows(self, rows: int) -> SynthSettings:
        """These settings with ``epochs`` decided for a fit on ``rows`` complete real rows."""
        return self if self.epochs is not None else self.model_copy(update={"epochs": auto_epochs(rows)})

    @model_validator(mode="after")
    def _pac_divides_batch(self) -> SynthSettings:
        if self.batch_size % 2 or self.batch_size % self.pac:
            raise ValueError(f"batch_size {self.batch_size} must be even and a multiple of pac {self.pac} "
                             "(CTGAN groups pac rows per discriminator input)")
        return self

    @classmethod
    def quick(cls, **overrides: Any) -> SynthSettings:
        """A fit of a few seconds, for tests and smoke runs (quality is poor, the plumbing is real)."""
        values: dict[str, Any] = {"rows": 2_000, "epochs": 2, "score_every": 1, "score_rows": 300,
                                  "score_train_rows": 1_000, "eval_rows": 800}
        return cls(**{**values, **overrides})


#: Row passes of the default fit: 60,000 rows x 40 epochs (4,800 steps of 500 rows).
DEFAULT_ROW_PASSES = 60_000 * 40
#: Bounds of the epochs chosen for the rows there are: 40 at 60,000 rows or more, 120 (the default
#: before session 6, 20,000 rows) at most, so a small table is not fitted for hours.
AUTO_EPOCHS = (40, 120)


def auto_epochs(rows: int) -> int:
    """Epochs that keep the default fit's row passes on ``rows`` rows, within :data:`AUTO_EPOCHS`."""
    low, high = AUTO_EPOCHS
    return max(low, min(high, round(DEFAULT_ROW_PASSES / max(rows, 1))))


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
    #: process CPU seconds of the fit (all threads of this process; the wall time on a quiet machine
    #: with one torch thread is about the same)
    fit_cpu_seconds: float = 0.0
    #: whether ``patience`` ended the fit before its last epoch
    stopped_early: bool = False

    @property
    def seconds_per_epoch(self) -> float:
        times = [r.seconds for r in self.history]
        return float(np.median(times)) if times else 0.0


class _EpochIterator:
    """Stands in for the tqdm bar CTGAN wraps its epoch loop in: calls back after every epoch and
    stops the loop (ends ``fit`` normally) when the callback says so."""

    def __init__(self, iterable: Any, callback: Callable[[int], bool]) -> None:
        self.iterable = iterable
        self.callback = callback

    def __iter__(self) -> Iterator[int]:
        done = 0
        self.callback(done)  # 0: the data is prepared, the networks are built, the first epoch starts
        for epoch in self.iterable:
            yield epoch
            done += 1
            if self.callback(done):
                return

    def set_description(self, _description: str) -> None:
        """CTGAN's verbose mode writes losses here; the callback reports them instead."""


@contextmanager
def _epoch_hook(callback: Callable[[int], bool]) -> Iterator[None]:
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


@contextmanager
def sampling_with(model: Any, generator: Any) -> Iterator[None]:
    """Let ``model`` sample with another generator (the averaged one) for a while."""
    live = model._generator
    model._generator = generator
    try:
        yield
    finally:
        model._generator = live


@dataclass
class _Best:
    """The snapshot kept so far: its rank, epoch, figures and the sampled generator's weights."""

    rank: tuple[bool, float] | None = None
    epoch: int = 0
    score: SnapshotScore | None = None
    state: dict[str, Any] | None = None
    since: int = 0  # scores since the last better one

    def could_be_beaten(self, tstr: float) -> bool:
        """Whether a snapshot of this TSTR could rank above the kept one (else its quality is not
        worth measuring)."""
        return self.rank is None or not self.rank[0] or tstr > self.rank[1]


def snapshot_rank(score: SnapshotScore, floor: float) -> tuple[bool, float]:
    """How snapshots are ordered: those whose quality reaches ``floor`` first, then by score (TSTR)."""
    return (score.quality is not None and score.quality >= floor, score.score)


class _Fit:
    """One fit in progress: the per-epoch callback, the average, the snapshot kept so far."""

    def __init__(self, model: Any, synth: Synthesizer, selection: pd.DataFrame, settings: SynthSettings,
                 on_epoch: Callable[[EpochReport], None] | None) -> None:
        self.model, self.synth, self.selection, self.settings = model, synth, selection, settings
        self.on_epoch = on_epoch
        self.result = FitResult(synth)
        self.best = _Best()
        self.stack = ExitStack()
        self.average: Any = None
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.last_tick = self.started

    def sampled(self) -> Any:
        """The generator that is scored and kept: the average, or the raw one without averaging."""
        return self.average.module if self.average is not None else self.model._generator

    def start(self) -> None:
        """Data prepared and networks built: average the generator, draw batch rows by index."""
        from heartrisk.synth.average import GeneratorAverage, averaging
        from heartrisk.synth.batch_rows import indexed_row_draws

        now = time.perf_counter()
        self.result.prepare_seconds = now - self.started
        self.last_tick = now
        self.stack.enter_context(indexed_row_draws(self.model._data_sampler))
        if self.settings.ema_decay is not None:
            self.average = GeneratorAverage(self.model._generator, self.settings.ema_decay)
            self.stack.enter_context(averaging(self.average, self.model._generator))

    def __call__(self, done: int) -> bool:
        """After epoch ``done`` (0: before the first): report, score when due; True stops the fit."""
        if done == 0:
            self.start()
            return False
        s = self.settings
        losses = self.model.loss_values.iloc[-1]
        g_loss, d_loss = float(losses["Generator Loss"]), float(losses["Discriminator Loss"])
        report = EpochReport(done, s.epochs, g_loss, d_loss, seconds=time.perf_counter() - self.last_tick)
        stop = False
        if done % s.score_every == 0 or done == s.epochs:
            self.score(report)
            stop = s.patience is not None and self.best.since >= s.patience
            self.result.stopped_early = stop and done < s.epochs
        report.best_score = self.best.score.score if self.best.score else None
        report.best_epoch = self.best.epoch
        self.result.history.append(report)
        if self.on_epoch is not None:
            self.on_epoch(report)
        self.last_tick = time.perf_counter()
        return stop

    def score(self, report: EpochReport) -> None:
        """Score the sampled generator; keep its weights if it ranks above the kept snapshot."""
        s = self.settings
        try:
            with sampling_with(self.model, self.sampled()):
                found = snapshot_score(
                    self.synth, self.selection.iloc[:s.score_rows], quality_rows=s.score_quality_rows,
                    train_rows=min(s.rows, s.score_train_rows), trees=s.score_trees,
                    seed=s.seed + report.epoch, wants_quality=self.best.could_be_beaten)
        except SynthError as exc:  # this snapshot cannot give rate-matched rows: never chosen
            report.note = str(exc)
            self.best.since += 1
            return
        report.score, report.quality, report.tstr = found.score, found.quality, found.tstr
        rank = snapshot_rank(found, s.quality_floor)
        if found.quality is not None and (self.best.rank is None or rank > self.best.rank):
            self.best = _Best(rank, report.epoch, found, copy.deepcopy(self.sampled().state_dict()))
        else:
            self.best.since += 1

    def finish(self) -> FitResult:
        """Stop averaging, put the kept snapshot's weights into the model, record the choice."""
        self.stack.close()
        history = self.result.history
        if not history:
            raise RuntimeError("ctgan's training loop no longer reports its epochs to heartrisk's hook; "
                               "check the ctgan version")
        if len(history) != self.settings.epochs and not self.result.stopped_early:
            raise RuntimeError("ctgan's training loop no longer reports its epochs to heartrisk's hook "
                               f"(saw {len(history)} of {self.settings.epochs}); check the ctgan version")
        if self.best.state is None or self.best.score is None:
            raise SynthError("no scored epoch could give valid rows at the real positive rate "
                             f"({history[-1].note}); fit more rows or epochs")
        self.model._generator = self.sampled()
        self.model._generator.load_state_dict(self.best.state)
        info = self.synth.info
        info.best_epoch, info.best_score = self.best.epoch, self.best.score.score
        self.result.fit_seconds = time.perf_counter() - self.started
        self.result.fit_cpu_seconds = time.process_time() - self.cpu_started
        return self.result


def new_ctgan(settings: SynthSettings) -> Any:
    """ctgan's CTGAN with these settings' knobs, on the CPU, seeded (``epochs`` already decided)."""
    from ctgan import CTGAN

    model = CTGAN(epochs=settings.epochs, batch_size=settings.batch_size, pac=settings.pac,
                  generator_lr=settings.generator_lr, discriminator_lr=settings.discriminator_lr,
                  enable_gpu=False)
    model.set_random_state(settings.seed)
    return model


def fit_synthesizer(
    real: pd.DataFrame,
    selection: pd.DataFrame,
    settings: SynthSettings,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> FitResult:
    """Fit a CTGAN on ``real`` rows, scoring a sample against ``selection`` rows every few epochs.

    ``selection`` must be real rows the fit does not see (and not the rows the final quality is
    measured on, or that figure would flatter the chosen snapshot). The sampled generator (the
    average of its weights, unless ``ema_decay`` is None) of the best-ranked snapshot is kept
    (:func:`snapshot_rank`); the last epoch is always scored.
    """
    import joblib
    import torch

    from heartrisk.synth.fast_noise import uniform_noise

    torch.set_num_threads(settings.torch_threads)
    train = training_frame(real)
    settings = settings.for_rows(len(train))
    if len(train) < settings.batch_size:
        raise SynthError(f"{len(train)} complete real rows are too few to fit on; need at least "
                         f"{settings.batch_size} (the batch size)")
    model = new_ctgan(settings)
    info = SynthInfo(
        feature_names=list(FEATURE_NAMES), label=LABEL.name, bounds=data_bounds(real),
        precision=data_precision(real), positive_rate=float((train[LABEL.name] == "Yes").mean()),
        fit_rows=len(train), epochs=settings.epochs, best_epoch=0, best_score=None,
        trained_at=utc_now().isoformat(), settings=settings.model_dump(),
    )
    fit = _Fit(model, Synthesizer(model, info), selection, settings, on_epoch)
    # CTGAN transforms columns with joblib's process pool: starting it costs ~10 s on 2 cores, more
    # than the work; threads do it without the start-up.
    try:
        with _epoch_hook(fit), uniform_noise(model), joblib.parallel_config(backend="threading"):
            model.fit(train, discrete_columns=[*CATEGORICAL_FEATURES, LABEL.name])
    finally:
        fit.stack.close()
    return fit.finish()
