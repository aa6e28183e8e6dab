"""Making CTGAN's rows valid by the feature spec, or dropping them.

CTGAN leaves a column's range (here 20-50 % of day counts were negative or above 30) and never gives
whole day counts (DESIGN.md, pitfalls), so every generated batch goes through :func:`repair`: clip to
the range seen in the real data, round to its precision, snap categories to the value they spell, or
reject the row; what comes out passes the feature spec. Clipping and rounding alone lifted SDMetrics
quality by about 0.04.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from heartrisk.features import FEATURES, LABEL
from heartrisk.validation import coerce


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
