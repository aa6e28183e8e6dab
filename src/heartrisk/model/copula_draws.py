"""The copula draw of a person's Unknown answers turned into answers, in one compiled loop (numba).

:func:`heartrisk.model.context.draw_unknowns` draws each Unknown's normal score given the known
answers (:class:`heartrisk.model.context._Conditional`) and reads the answer off the distribution of
the draw's (sex, age) group. Done with numpy, feature by feature, that was some 25 calls of a few µs
each for a request's 16 draws; here it is one call of scipy's ``ndtr`` and one compiled loop. The
loop's arithmetic is numpy's: ``np.searchsorted(side="right")`` on cumulative shares and ``np.interp``
on a number's quantiles, then clipped to the question's range and rounded if whole (tests hold it
to numpy's own functions, value for value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.special import ndtr

from heartrisk.features import BY_NAME
from heartrisk.model.reference import COPULA_FEATURES, GROUPS, NUMBER_LEVELS, SurveyReference


@dataclass(frozen=True)
class CopulaTables:
    """Every copula answer's distribution in every group (:data:`GROUPS`), in one padded array.

    ``tables[f, g]`` holds feature ``f``'s cumulative shares in group ``g`` (padded with +inf) or
    its quantiles at :data:`NUMBER_LEVELS`; ``lengths[f]`` says how many entries count.
    """

    tables: np.ndarray
    lengths: np.ndarray
    numeric: np.ndarray
    low: np.ndarray
    high: np.ndarray
    whole: np.ndarray

    @classmethod
    def of(cls, reference: SurveyReference) -> CopulaTables:
        """The reference's tables, made once and kept with it."""
        found = reference.__dict__.get("_copula_tables")
        if found is None:
            found = reference.__dict__["_copula_tables"] = cls._build(reference)
        return found

    @classmethod
    def _build(cls, reference: SurveyReference) -> CopulaTables:
        features = [BY_NAME[name] for name in COPULA_FEATURES]
        width = max(len(NUMBER_LEVELS), *(len(f.values) for f in features if not f.is_numeric))
        tables = np.full((len(features), len(GROUPS), width), np.inf)
        for i, f in enumerate(features):
            rows = reference.table(f.name)
            tables[i, :, : rows.shape[1]] = rows
        return cls(tables,
                   np.array([len(NUMBER_LEVELS) if f.is_numeric else len(f.values) for f in features]),
                   np.array([f.is_numeric for f in features]),
                   np.array([f.low if f.is_numeric else 0.0 for f in features], dtype=float),
                   np.array([f.high if f.is_numeric else 0.0 for f in features], dtype=float),
                   np.array([f.whole for f in features]))

    def draw(self, features: np.ndarray, shift: np.ndarray, mean: np.ndarray, cells: np.ndarray,
             at: np.ndarray) -> np.ndarray:
        """Answers of draws whose normal scores are ``shift[d] + mean[at[d]]``, draw ``d`` in group
        ``cells[at[d]]``; column ``c`` is copula feature ``features[c]``: an answer's index, or the
        number itself. The scores become levels by scipy's own ``ndtr``, in one call (numba's erf
        differs from scipy's in the last bit, which could move an answer across a boundary)."""
        levels = ndtr(shift + mean[at])
        return _draw(self.tables, self.lengths, self.numeric, self.low, self.high, self.whole, features,
                     levels, cells, at, NUMBER_LEVELS)


@njit(cache=True, nogil=True)
def _interp(u: float, grid: np.ndarray, values: np.ndarray) -> float:
    """``np.interp(u, grid, values)`` for one point on an increasing ``grid``."""
    last = len(grid) - 1
    if u <= grid[0]:
        return values[0]
    if u >= grid[last]:
        return values[last]
    j = 0
    while grid[j + 1] <= u:
        j += 1
    if u == grid[j]:
        return values[j]
    slope = (values[j + 1] - values[j]) / (grid[j + 1] - grid[j])
    return slope * (u - grid[j]) + values[j]


@njit(cache=True, nogil=True)
def _draw(tables, lengths, numeric, low, high, whole, features, levels, cells, at, grid):
    out = np.empty(levels.shape)
    for d in range(levels.shape[0]):
        g = cells[at[d]]
        for c in range(levels.shape[1]):
            f = features[c]
            u = levels[d, c]
            row = tables[f, g]
            if numeric[f]:
                value = min(max(_interp(u, grid, row), low[f]), high[f])
                out[d, c] = np.rint(value) if whole[f] else value
            else:
                k = 0
                for j in range(lengths[f]):
                    if row[j] <= u:
                        k += 1
                out[d, c] = min(k, lengths[f] - 1)
    return out
