"""The compiled copula draw (model/copula_draws.py) reads answers off the reference exactly as numpy's
rules do: ``ndtr``, ``searchsorted(side="right")`` on cumulative shares, ``interp`` on quantiles, then
the question's range and whole numbers; each draw in its own (sex, age) group."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from heartrisk.config import Settings
from heartrisk.features import BY_NAME
from heartrisk.model.copula_draws import CopulaTables
from heartrisk.model.reference import COPULA_FEATURES, GROUPS, NUMBER_LEVELS, SurveyReference
from heartrisk.model.registry import champion_model


@pytest.fixture(scope="module")
def reference(trained_home: Settings) -> SurveyReference:
    found = champion_model(trained_home).reference
    assert found is not None
    return found


def numpy_answer(reference: SurveyReference, name: str, group: int, score: float) -> float:
    """The answer at normal score ``score`` in ``group`` by numpy's own functions."""
    f = BY_NAME[name]
    u = ndtr(score)
    row = reference.table(name)[group]
    if f.is_numeric:
        value = float(np.clip(np.interp(u, NUMBER_LEVELS, row), f.low, f.high))
        return float(np.round(value)) if f.whole else value
    return float(min(np.searchsorted(row, u, side="right"), len(f.values) - 1))


def test_draws_equal_numpys_rules_in_every_group(reference: SurveyReference) -> None:
    rng = np.random.default_rng(0)
    features = np.arange(len(COPULA_FEATURES))
    cells = rng.choice(len(GROUPS), 5, replace=False)
    at = rng.integers(0, len(cells), 64)
    shift = rng.normal(scale=1.5, size=(64, len(features)))
    shift[:4] = [[-9.0], [9.0], [0.0], [1e-3]]  # beyond both ends of every distribution, the middle
    mean = rng.normal(scale=0.5, size=(len(cells), len(features)))
    drawn = CopulaTables.of(reference).draw(features, shift, mean, cells, at)
    for d in range(64):
        for c, name in enumerate(COPULA_FEATURES):
            expected = numpy_answer(reference, name, int(cells[at[d]]), shift[d, c] + mean[at[d], c])
            assert drawn[d, c] == expected, (name, d)


def test_a_subset_of_features_keeps_its_order(reference: SurveyReference) -> None:
    """Columns follow ``features`` (the Unknowns' places in COPULA_FEATURES), not the table's order."""
    tables = CopulaTables.of(reference)
    picked = np.array([5, 0, 9])
    shift = np.linspace(-2, 2, 12)[:, None] * np.ones((1, 3))
    drawn = tables.draw(picked, shift, np.zeros((1, 3)), np.array([3]), np.zeros(12, dtype=np.int64))
    whole = tables.draw(np.arange(len(COPULA_FEATURES)), np.repeat(shift[:, :1], len(COPULA_FEATURES), 1),
                        np.zeros((1, len(COPULA_FEATURES))), np.array([3]), np.zeros(12, dtype=np.int64))
    np.testing.assert_array_equal(drawn, whole[:, picked])
