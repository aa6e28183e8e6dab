"""The fit's levers (issue 16): the generator average, vectorized batch rows, snapshot choice, stopping."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from heartrisk.synth.average import GeneratorAverage, averaging
from heartrisk.synth.batch_rows import RowIndex, indexed_row_draws
from heartrisk.synth.fit import AUTO_EPOCHS, SynthSettings, _Best, auto_epochs, fit_synthesizer, snapshot_rank
from heartrisk.synth.quality import SnapshotScore


# ------------------------------------------------------------------------------------ the average
def _step(optimizer: torch.optim.Optimizer, module: torch.nn.Module, x: torch.Tensor) -> None:
    optimizer.zero_grad()
    module(x).pow(2).sum().backward()
    optimizer.step()


def test_average_follows_the_generator_steps_only() -> None:
    torch.manual_seed(0)
    generator, discriminator = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    g_opt = torch.optim.Adam(generator.parameters(), lr=0.1)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=0.1)
    x = torch.randn(8, 3)
    average = GeneratorAverage(generator, decay=0.5)
    expected = [p.detach().clone() for p in generator.parameters()]
    with averaging(average, generator):
        for t in range(4):
            _step(d_opt, discriminator, x)  # another optimizer's step: the average does not move
            _step(g_opt, generator, x)
            decay = min(0.5, (1 + t) / (10 + t))
            expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, generator.parameters(),
                                                                             strict=True)]
    assert average.steps == 4
    for mine, wanted in zip(average.module.parameters(), expected, strict=True):
        torch.testing.assert_close(mine, wanted)
    kept = [p.clone() for p in average.module.parameters()]
    _step(g_opt, generator, x)  # after the block the hook is gone
    assert average.steps == 4
    assert all(torch.equal(a, b) for a, b in zip(kept, average.module.parameters(), strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(kept, generator.parameters(), strict=True))


def test_average_refuses_a_decay_outside_0_1() -> None:
    with pytest.raises(ValueError, match="decay"):
        GeneratorAverage(torch.nn.Linear(2, 2), decay=1.0)


# ------------------------------------------------------------------------------------ batch rows
class _Sampler:
    """Stands in for ctgan's DataSampler: the per-category row ids and its own (looping) draw."""

    def __init__(self, rows_by_category: list[list[np.ndarray]]) -> None:
        self._rid_by_cat_cols = rows_by_category

    def sample_data(self, data: np.ndarray, n: int, col: object, opt: object) -> np.ndarray:
        return data[np.random.randint(len(data), size=n)]


def test_indexed_draws_pick_uniformly_among_the_rows_of_the_condition() -> None:
    np.random.seed(0)
    column_a = np.array([0, 1, 0, 2, 1, 0])        # categories of discrete column 0, row by row
    column_b = np.array([1, 1, 0, 0, 1, 1])        # categories of discrete column 1
    rows = [[np.flatnonzero(column_a == c) for c in range(3)],
            [np.flatnonzero(column_b == c) for c in range(2)]]
    data = np.arange(6)
    sampler = _Sampler(rows)
    col = np.array([0] * 3000 + [1] * 3000)
    opt = np.array([0] * 3000 + [1] * 3000)        # column 0 = category 0, column 1 = category 1
    with indexed_row_draws(sampler):
        picked = sampler.sample_data(data, len(col), col, opt)
        unconditioned = sampler.sample_data(data, 5, None, None)
    assert set(picked[:3000]) == {0, 2, 5} and set(picked[3000:]) == {0, 1, 4, 5}
    counts = np.bincount(picked[:3000], minlength=6)[[0, 2, 5]]
    assert counts.min() > 900  # ~1,000 each: uniform among the rows of the condition
    assert len(unconditioned) == 5
    assert "sample_data" not in vars(sampler)  # the override is gone: nothing of it is saved


def test_row_index_handles_categories_of_every_size() -> None:
    index = RowIndex([[np.array([4]), np.array([], dtype=np.int64), np.array([1, 2])], [np.array([0, 3])]])
    assert list(index.draw(np.array([0, 0, 0]), np.array([0, 0, 0]))) == [4, 4, 4]
    assert set(index.draw(np.full(50, 1), np.zeros(50, dtype=int))) == {0, 3}


# ------------------------------------------------------------------------------------ snapshot choice
def test_snapshots_reaching_the_quality_floor_rank_first_then_by_tstr() -> None:
    floor = 0.93
    good_q_low_tstr = snapshot_rank(SnapshotScore(tstr=0.70, quality=0.95), floor)
    poor_q_high_tstr = snapshot_rank(SnapshotScore(tstr=0.80, quality=0.90), floor)
    good_q_high_tstr = snapshot_rank(SnapshotScore(tstr=0.81, quality=0.94), floor)
    assert poor_q_high_tstr < good_q_low_tstr < good_q_high_tstr
    assert SnapshotScore(tstr=float("nan"), quality=0.9).score == 0.9  # one label: quality ranks


def test_quality_is_measured_only_when_a_snapshot_could_be_kept() -> None:
    best = _Best()
    assert best.could_be_beaten(0.5)  # nothing kept yet
    best = _Best(rank=(False, 0.8))
    assert best.could_be_beaten(0.7)  # the kept one misses the floor: a good quality could win
    best = _Best(rank=(True, 0.8))
    assert not best.could_be_beaten(0.8) and best.could_be_beaten(0.81)


# ------------------------------------------------------------------------------------ a small fit
@pytest.fixture(scope="module")
def real_rows(dev_frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1,000 fit rows and 600 selection rows of the dev file, typed by the spec."""
    from heartrisk.validation import coerce

    rows = dev_frame.sample(n=1_600, random_state=3)
    frame = coerce(rows, naming="column", label="required").frame
    return frame.iloc[:1_000].reset_index(drop=True), frame.iloc[1_000:].reset_index(drop=True)


def test_patience_stops_the_fit_and_the_model_keeps_nothing_of_heartrisk(real_rows) -> None:
    fit_rows, selection = real_rows
    settings = SynthSettings.quick(rows=1_000, epochs=12, score_every=1, patience=1, score_rows=600,
                                   score_train_rows=500, batch_size=200)
    result = fit_synthesizer(fit_rows, selection, settings)
    info, history = result.synthesizer.info, result.history
    assert result.stopped_early and len(history) < 12
    assert history[-1].epoch == info.best_epoch + 1  # one score without a better one, then stop
    assert info.best_score == pytest.approx(next(r.score for r in history if r.epoch == info.best_epoch))
    model = result.synthesizer.model
    assert "sample_data" not in vars(model._data_sampler)
    assert b"heartrisk" not in pickle.dumps(model)  # a plain ctgan object: no hook, closure or class of ours
    assert len(result.synthesizer.sample(50, seed=1).frame) == 50


# ------------------------------------------------------------------------------------ the epochs
@pytest.mark.parametrize(("rows", "epochs"), [(60_000, 40), (100_000, 40), (40_000, 60), (20_000, 120),
                                              (30_001, 80), (2_387, 120)])
def test_default_epochs_keep_the_default_fits_steps_within_bounds(rows: int, epochs: int) -> None:
    """40 epochs on a small table were a third of the steps the fit needs (session 6's attack helper:
    TSTR 0.47-0.57 on 2,387 rows against 0.64-0.71 with 120 epochs)."""
    assert auto_epochs(rows) == epochs
    assert SynthSettings().for_rows(rows).epochs == epochs
    assert SynthSettings(epochs=7).for_rows(rows).epochs == 7  # given: kept
    assert AUTO_EPOCHS[0] <= auto_epochs(rows) <= AUTO_EPOCHS[1]


def test_a_fit_on_fewer_rows_runs_the_epochs_chosen_for_them(real_rows) -> None:
    fit_rows, selection = real_rows
    settings = SynthSettings.quick(epochs=None, rows=1_000, score_every=60, score_rows=600,
                                   score_train_rows=500)
    result = fit_synthesizer(fit_rows, selection, settings)
    assert len(result.history) == result.synthesizer.info.epochs == auto_epochs(len(fit_rows)) == 120
