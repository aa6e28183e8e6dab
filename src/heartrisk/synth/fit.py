"""Fitting the CTGAN: on real rows, scored every few epochs, kept at its best snapshot.

Three habits of CTGAN on this data shape the fit (DESIGN.md, pitfalls):

* its quality swings ±0.03 between epochs past ~50 epochs and its positive rate drifts, so
  :func:`fit_synthesizer` scores a sample every ``score_every`` epochs
  (:func:`heartrisk.synth.quality.snapshot_score`) and keeps the best generator;
* it leaves the real data's ranges, so the fit records them (:func:`data_bounds`,
  :func:`data_precision`) for every later sample to be repaired by;
* torch threads busy-wait next to other OpenMP users, so the fit runs on ``torch_threads`` threads.

torch and ctgan are imported inside :func:`fit_synthesizer`: importing this module (for its settings)
stays cheap.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from heartrisk.clock import utc_now
from heartrisk.features import CATEGORICAL_FEATURES, FEATURE_NAMES, FEATURES, LABEL
from heartrisk.synth.quality import snapshot_score
from heartrisk.synth.synthesizer import LABEL_TEXT, SynthError, Synthesizer, SynthInfo

#: Synthetic rows the classifier of a snapshot score is trained on (at most the fit's rows).
SNAPSHOT_TRAIN_ROWS = 10_000


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
