"""Real people's answers from the dev file, as the API takes them (no extract is committed)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from heartrisk.features import BY_COLUMN, FEATURE_NAMES


def rows_from(dev_frame: pd.DataFrame, n: int, seed: int,
              where: pd.Series | None = None) -> list[dict[str, Any]]:
    """``n`` real people's answers from the dev file, as the API takes them."""
    frame = dev_frame if where is None else dev_frame[where]
    sample = frame.sample(n=n, random_state=seed)
    out = []
    for _, raw in sample.iterrows():
        row = {}
        for column, value in raw.items():
            spec = BY_COLUMN[column]
            if spec.name in FEATURE_NAMES:
                row[spec.name] = float(value) if spec.is_numeric else value
        out.append(row)
    return out
