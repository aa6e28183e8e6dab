"""A model version's reliability table at its threshold: what its risks said and what was observed.

Built at training time from the version's real test records and kept in its model card
(:mod:`heartrisk.model.card`); monitoring recalibrates the served risks with it before estimating
performance without labels (:mod:`heartrisk.monitoring.estimated`, where the figures behind it are).
It lives with the model because training makes it and monitoring only reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Fewest reference records in a bin of the reliability table.
MIN_BIN_ROWS = 100
#: Fewest reference records on one side of the threshold for that side to be recalibrated at all.
MIN_SIDE_ROWS = 30
#: Most bins of the reliability table on each side of the threshold.
MAX_BINS = 10


@dataclass(frozen=True)
class Reliability:
    """A model version's reliability table on labelled reference records (its real test records),
    split at the threshold: per risk bin and side, the records, the sum of their risks and how many
    had heart disease. Aggregates only: every bin holds at least :data:`MIN_BIN_ROWS` records, or a
    whole side of :data:`MIN_SIDE_ROWS` or more (a side with fewer gets no bin and is left as the model
    says), and a bin is named by its upper edge, the midpoint between two bins, never one person's
    risk."""

    threshold: float
    flagged: list[bool]
    upper: list[float]
    count: list[int]
    probability_sum: list[float]
    positives: list[int]

    @classmethod
    def build(cls, y: np.ndarray, probabilities: np.ndarray, threshold: float,
              rows_per_bin: int = MIN_BIN_ROWS, max_bins: int = MAX_BINS) -> Reliability:
        """Equal-count bins of the risk on each side of the threshold (at most ``max_bins`` a side)."""
        y, p = np.asarray(y, dtype=bool), np.asarray(probabilities, dtype=float)
        table: dict[str, list] = {"flagged": [], "upper": [], "count": [], "probability_sum": [],
                                  "positives": []}
        for side in (False, True):
            inside = (p >= threshold) == side
            if inside.sum() < MIN_SIDE_ROWS:
                continue
            order = np.argsort(p[inside], kind="stable")
            ps, ys = p[inside][order], y[inside][order]
            parts = np.array_split(np.arange(len(ps)), max(1, min(max_bins, len(ps) // rows_per_bin)))
            for k, part in enumerate(parts):
                last = k == len(parts) - 1
                table["flagged"].append(side)
                table["upper"].append((1.0 if side else float(threshold)) if last
                                      else float((ps[part[-1]] + ps[parts[k + 1][0]]) / 2))
                table["count"].append(len(part))
                table["probability_sum"].append(float(ps[part].sum()))
                table["positives"].append(int(ys[part].sum()))
        return cls(threshold=float(threshold), **table)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reliability:
        return cls(**{k: data[k] for k in ("threshold", "flagged", "upper", "count", "probability_sum",
                                           "positives")})

    def bins_of(self, flagged: np.ndarray, risk: np.ndarray) -> np.ndarray:
        """The table's bin for each served cell (its side, the first bin whose upper edge is at or
        above its mean risk); -1 where that side has no bin."""
        out = np.full(len(risk), -1)
        sides = np.asarray(self.flagged, dtype=bool)
        uppers = np.asarray(self.upper, dtype=float)
        for side in (False, True):
            mine = np.flatnonzero(sides == side)
            cells = np.asarray(flagged, dtype=bool) == side
            if len(mine) and cells.any():
                at = np.searchsorted(uppers[mine], np.asarray(risk)[cells], side="left")
                out[cells] = mine[np.clip(at, 0, len(mine) - 1)]
        return out

    def ratios(self, draws: int | None, rng: np.random.Generator) -> np.ndarray:
        """Observed / predicted rate per bin: the posterior mean (``draws=None``) or ``draws`` draws,
        the observed rate from its Beta posterior (Jeffreys prior) given the bin's records."""
        n = np.asarray(self.count, dtype=float)
        k = np.asarray(self.positives, dtype=float)
        predicted = np.maximum(np.asarray(self.probability_sum, dtype=float) / n, 1e-6)
        if draws is None:
            return (k + 0.5) / (n + 1) / predicted
        return rng.beta(k + 0.5, n - k + 0.5, size=(draws, len(n))) / predicted
