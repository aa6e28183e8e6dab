"""Checking answers against the feature spec, vectorised, with messages a person can act on.

One function, :func:`coerce`, turns raw cells (strings from a CSV, JSON values, or typed columns made
by a program) into typed columns and a list of :class:`Problem` s. Callers decide what a problem means:
``ingest`` and every store write refuse the whole batch, ``predict --csv`` skips the bad rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from heartrisk.errors import UserError
from heartrisk.features import FEATURES, LABEL, Feature

#: How many problems an error message lists before it summarises the rest.
SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Problem:
    """One bad cell: where it is (0-based row of the batch, column) and why it was refused.

    ``row=None`` is a problem with a whole column (missing, unexpected)."""

    row: int | None
    column: str
    value: object
    reason: str

    def describe(self, first_line: int | None = None) -> str:
        """``line 7, column BMI: 'abc' is not a number`` (or ``row 5`` when there is no file)."""
        if self.row is None:
            return f"column {self.column} {self.reason}"
        where = f"line {self.row + first_line}" if first_line is not None else f"row {self.row}"
        return f"{where}, column {self.column}: {shown_value(self.value)} {self.reason}"


def shown_value(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a 5 MB cell must not make a 5 MB message."""
    text = repr(value)
    if len(text) <= limit + 20:
        return text
    return f"{text[:limit]}…[{len(str(value)):,} characters]{text[-1]}"


class ValidationError(UserError, ValueError):
    """A batch was refused; the message names every (or the first few) bad rows and columns."""

    def __init__(self, problems: list[Problem], source: str = "batch",
                 first_line: int | None = None) -> None:
        self.problems = problems
        self.source = source
        self.first_line = first_line
        shown = [p.describe(first_line) for p in problems[:SHOWN_PROBLEMS]]
        more = len(problems) - len(shown)
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(
            f"{source}: {len(problems)} invalid value(s), nothing was written:\n  "
            + "\n  ".join(shown) + tail
        )


@dataclass
class Coerced:
    """Typed columns (store names) and the problems found on the way."""

    frame: pd.DataFrame
    problems: list[Problem]

    @property
    def bad_rows(self) -> np.ndarray:
        """Positions of rows with at least one problem, sorted."""
        return np.unique(np.array([p.row for p in self.problems if p.row is not None], dtype=int))

    def raise_if_any(self, source: str = "batch", first_line: int | None = None) -> pd.DataFrame:
        if self.problems:
            raise ValidationError(self.problems, source, first_line)
        return self.frame


def problem_order(problem: Problem) -> tuple[int, str]:
    """Sort key: column-wide problems first, then by row and column."""
    return (-1 if problem.row is None else problem.row, problem.column)


def _is_missing(raw: pd.Series) -> pd.Series:
    """Empty cells, None and float NaN mean "Unknown"; the *string* 'NaN' does not (it is refused)."""
    missing = raw.isna()
    if raw.dtype == object:
        missing = missing | raw.astype(str).str.strip().eq("")
    return missing


def _coerce_number(raw: pd.Series, spec: Feature, label: str, problems: list[Problem]) -> pd.Series:
    missing = _is_missing(raw)
    if raw.dtype == bool:  # JSON true/false must not pass as 1/0
        values = pd.Series(np.nan, index=raw.index)
        bad = ~missing
        reason = "is not a number"
    else:
        cells = raw.astype(str).str.strip() if raw.dtype == object else raw
        values = pd.to_numeric(cells.where(~missing), errors="coerce").astype(float)
        bad = ~missing & values.isna()
        reason = "is not a number"
    _report(raw, bad, label, reason, problems)
    ok = ~missing & ~bad
    finite = values.where(ok)
    out_of_range = ok & ((finite < spec.low) | (finite > spec.high) | ~np.isfinite(finite))
    _report(raw, out_of_range, label, f"is out of range: expected {spec.describe_allowed()}", problems)
    if spec.whole:
        fractional = ok & ~out_of_range & (finite % 1 != 0)
        _report(raw, fractional, label, f"is not a whole number: expected {spec.describe_allowed()}",
                problems)
    return values.where(ok & ~out_of_range)


def _coerce_category(raw: pd.Series, spec: Feature, label: str, problems: list[Problem]) -> pd.Series:
    missing = _is_missing(raw)
    is_text = raw.map(type).eq(str) if raw.dtype == object else pd.Series(False, index=raw.index)
    text = raw.astype(str).str.strip()
    bad = ~missing & ~(is_text & text.isin(spec.values))
    _report(raw, bad, label, f"is not allowed: expected {spec.describe_allowed()}", problems)
    return text.where(~missing & ~bad, None).astype(object)


def _coerce_label(raw: pd.Series, label: str, problems: list[Problem], required: bool) -> pd.Series:
    missing = _is_missing(raw)
    if raw.dtype == bool:
        return raw.astype("boolean")
    mapping = {"Yes": True, "No": False, True: True, False: False, "true": True, "false": False}
    text = raw.map(lambda v: v.strip() if isinstance(v, str) else v)
    mapped = text.map(lambda v: mapping.get(v) if isinstance(v, (str, bool)) else None)
    bad = ~missing & mapped.isna()
    _report(raw, bad, label, "is not allowed: expected 'Yes' or 'No'", problems)
    if required:
        _report(raw, missing, label, "is missing: the diagnosis is required here", problems)
    return mapped.astype("boolean")


def _report(raw: pd.Series, mask: pd.Series, label: str, reason: str,
            problems: list[Problem]) -> None:
    positions = np.flatnonzero(mask.to_numpy(dtype=bool))
    values = raw.to_numpy()
    problems.extend(Problem(int(i), label, _plain(values[i]), reason) for i in positions)


def _plain(value: object) -> object:
    """numpy scalars as Python values, so messages read ``500.0`` and not ``np.float64(500.0)``."""
    return value.item() if isinstance(value, np.generic) else value


def coerce(
    raw: pd.DataFrame,
    *,
    naming: Literal["name", "column"] = "name",
    label: Literal["required", "optional", "absent"] = "required",
) -> Coerced:
    """Type and check every feature column (and the label) of ``raw``.

    ``naming="column"`` reads Kaggle column names (``BMI``, ``HeartDisease``) and reports problems under
    them; the typed frame always uses the spec's snake_case names. Features may be missing (Unknown);
    the label is required, optional or absent as the caller says. Row order and count are kept.
    """
    problems: list[Problem] = []
    out: dict[str, pd.Series] = {}
    raw = raw.reset_index(drop=True)
    for spec in FEATURES:
        key = spec.column if naming == "column" else spec.name
        if key not in raw.columns:
            raise ValidationError([Problem(None, key, None, "is missing")])
        coercer = _coerce_number if spec.is_numeric else _coerce_category
        out[spec.name] = coercer(raw[key], spec, key, problems)
    if label != "absent":
        key = LABEL.column if naming == "column" else LABEL.name
        if key in raw.columns:
            out[LABEL.name] = _coerce_label(raw[key], key, problems, required=label == "required")
        elif label == "required":
            raise ValidationError([Problem(None, key, None, "is missing")])
    problems.sort(key=problem_order)
    return Coerced(pd.DataFrame(out, index=raw.index), problems)
