"""Predict: score a Kaggle-format CSV with the champion (``heartrisk predict --csv IN --out OUT``).

The HeartDisease column is optional and empty cells are Unknown. A bad row (a value the spec does not
allow) is reported by its file line and left out; every good row is still scored. OUT holds the good
rows' answers (Kaggle columns, Unknown left empty) plus ``line`` (its line in IN), ``probability`` and
``prediction``; it is written to a temporary file and moved into place, so a failed run leaves no
half-written OUT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.features import FEATURES, LABEL
from heartrisk.files import atomic_write
from heartrisk.model.registry import champion_model
from heartrisk.sources.kaggle import FIRST_DATA_LINE, read_kaggle_csv
from heartrisk.validation import Problem


class PredictError(UserError, RuntimeError):
    """Nothing could be scored (every row was bad) or OUT cannot be written."""


@dataclass(frozen=True)
class PredictResult:
    """What ``predict_csv`` did: rows scored and written, the bad rows' problems, the model used."""

    path: Path
    out: Path
    rows_in_file: int
    scored: int
    predicted_positive: int
    problems: list[Problem]
    bad_lines: list[int]
    model_version: str
    threshold: float

    @property
    def summary(self) -> str:
        return (f"scored {self.scored:,} of {self.rows_in_file:,} rows with model version "
                f"{self.model_version}; {self.predicted_positive:,} predicted at risk")


def predict_csv(settings: Settings, csv_path: Path, out_path: Path) -> PredictResult:
    """Read, check, score the good rows with the champion and write OUT atomically."""
    parsed = read_kaggle_csv(Path(csv_path), label="optional")  # a bad file fails before the model loads
    model = champion_model(settings)
    frame = parsed.frame
    bad = parsed.coerced.bad_rows
    good = frame.drop(index=bad)
    if good.empty:
        shown = "; ".join(p.describe(FIRST_DATA_LINE) for p in parsed.coerced.problems[:5])
        raise PredictError(f"{csv_path}: none of the {len(frame):,} rows can be scored ({shown}); "
                           f"{out_path} was not written")
    probability = model.predict_proba(good)
    output = kaggle_frame(good)
    output.insert(0, "line", (good.index + FIRST_DATA_LINE).astype(int))
    at_risk = probability >= model.threshold
    output["probability"] = probability.round(6)
    output["prediction"] = np.where(at_risk, "Yes", "No")
    write_atomically(output, Path(out_path))
    return PredictResult(
        path=Path(csv_path), out=Path(out_path), rows_in_file=len(frame), scored=len(good),
        predicted_positive=int(at_risk.sum()),
        problems=parsed.coerced.problems,
        bad_lines=[int(r) + FIRST_DATA_LINE for r in bad],
        model_version=model.version, threshold=model.threshold,
    )


def kaggle_frame(typed: pd.DataFrame) -> pd.DataFrame:
    """Typed rows back in Kaggle columns and spellings (whole numbers without ``.0``, Unknown empty)."""
    columns: dict[str, pd.Series] = {}
    if LABEL.name in typed.columns:
        columns[LABEL.column] = typed[LABEL.name].map({True: "Yes", False: "No"})
    for f in FEATURES:
        values = typed[f.name]
        if f.is_numeric and f.whole:
            values = values.astype("Int64")
        columns[f.column] = values
    return pd.DataFrame(columns, index=typed.index)


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV next to ``path`` and rename it into place (no half-written file on failure)."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PredictError(f"--out: folder {folder} does not exist")
    with atomic_write(path) as partial:
        frame.to_csv(partial, index=False)
