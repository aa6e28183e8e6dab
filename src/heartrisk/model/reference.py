"""What a model version knows of the survey population, as aggregates only (issue 17).

Built once at training time from the *real* training records and stored with the model version
(:attr:`RiskModel.reference`, plain lists and numbers, so it pickles, saves with skops and logs to
MLflow as JSON). Serving never sees a survey row again; it reads:

- **risk percentiles per sex x age group** (99 percentiles of the model's calibrated risk over the
  cell's records), for "higher than N % of people like you";
- **answer distributions per sex x age group** (shares of each answer; 49 quantiles of each number)
  and **how the answers go together** (the correlation of their normal scores within sex x age
  groups, a Gaussian copula), from which the Unknown answers of a person are drawn *given the known
  ones* for the uncertainty range. Drawing each Unknown on its own (independently within the group)
  covered the true risk only 76 % of the time with 6 Unknowns on the quick test model: the answers
  that raise the risk come together (poor health, difficulty walking, diabetes, bad days);
- **calibration refits** (a bootstrap recalibration of the chosen calibration on the held-out
  slice): the model's own uncertainty, added to the range.

Cells use ``*`` for "any" (``Female|*``, ``*|60-64``, ``*|*``), so a person whose sex or age group is
Unknown is compared with, and has answers drawn from, a wider group. A cell with fewer than
:data:`MIN_CELL` records is left out (its wider group is used): no quantile ever describes a handful of
people.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from heartrisk.features import FEATURES, feature
from heartrisk.model.estimator import Platt, RiskModel, raw_margin, sigmoid

ANY = "*"
#: Fewest records behind any stored aggregate.
MIN_CELL = 30
#: Percentile levels of the stored risk distribution (1st..99th): never one person's risk.
PERCENTILES = np.arange(1, 100, dtype=float)
#: Quantile levels of a number's stored distribution (2 %..98 %), what an Unknown number is drawn from.
NUMBER_LEVELS = np.linspace(0.02, 0.98, 49)
#: Bootstrap refits of the calibration stored with the model.
CALIBRATION_REFITS = 16
#: Normal scores of numbers a reference remembers before it forgets them all (a few MB).
_MAX_REMEMBERED = 50_000

SEX = feature("sex")
AGE = feature("age_category")
#: The answers joined by the copula: all but who a person is. Race is left out: its answers have no
#: order, so a correlation of its scores would mean nothing.
COPULA_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES
                                         if f.name not in ("sex", "age_category", "race"))


#: Every (sex, age group) a draw can be in, Unknown (None) last: the rows of
#: :meth:`SurveyReference.table`; a group's row is :func:`group_ids`.
GROUPS: tuple[tuple[str | None, str | None], ...] = tuple(
    (sex, age) for sex in (*SEX.values, None) for age in (*AGE.values, None))


def group_ids(sexes: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """The :data:`GROUPS` row of each (sex, age); answer indices, -1 for Unknown."""
    ages = np.where(ages < 0, len(AGE.values), ages)
    return np.where(sexes < 0, len(SEX.values), sexes) * (len(AGE.values) + 1) + ages


def group_row(sex: int, age: int) -> int:
    """:func:`group_ids` of one (sex, age) answered by both (answer indices)."""
    return sex * (len(AGE.values) + 1) + age


def cell_key(sex: str | None, age: str | None) -> str:
    return f"{sex or ANY}|{age or ANY}"


def cells_for(sex: str | None, age: str | None) -> list[str]:
    """The cells to try for a person, narrowest first; ``*|*`` always exists."""
    keys = [cell_key(sex, age), cell_key(sex, None), cell_key(None, age), cell_key(None, None)]
    return list(dict.fromkeys(keys))


@dataclass
class SurveyReference:
    """Aggregates of the real training records, see the module docstring."""

    records: int
    risk_percentiles: dict[str, list[float]]
    answers: dict[str, dict[str, list[float]]]  # cell -> feature -> shares (answers) or quantiles (numbers)
    calibration_refits: list[tuple[float, float]]  # (a, b) on the calibrated log-odds
    answer_correlation: list[list[float]]  # COPULA_FEATURES x COPULA_FEATURES, normal scores

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurveyReference:
        return cls(records=int(data["records"]), risk_percentiles=data["risk_percentiles"],
                   answers=data["answers"],
                   calibration_refits=[(float(a), float(b)) for a, b in data["calibration_refits"]],
                   answer_correlation=data["answer_correlation"])

    def distribution(self, name: str, sex: Any, age: Any) -> np.ndarray:
        """A feature's stored distribution in the narrowest cell of (sex, age) that has it."""
        return self.group(sex, age)[name]

    def group(self, sex: Any, age: Any) -> dict[str, np.ndarray]:
        """Every feature's distribution for (sex, age), each from the narrowest cell that has it;
        resolved once per group and kept (a request must not search the cells again)."""
        resolved: dict[tuple[Any, Any], dict[str, np.ndarray]] = self.__dict__.setdefault("_groups", {})
        found = resolved.get((sex, age))
        if found is None:
            found = {}
            for f in FEATURES:
                cell = next((self.answers[k] for k in cells_for(sex, age)
                             if f.name in self.answers.get(k, {})), None)
                if cell is None:
                    raise KeyError(f"the model's survey reference has no distribution of {f.name}")
                found[f.name] = np.asarray(cell[f.name])
            resolved[(sex, age)] = found
        return found

    # -------------------------------------------------------------- every group at once
    # A person whose sex or age group is Unknown has draws in up to 16 (sex, age) groups; one
    # request's draws are worked out for all their groups together, as rows of these tables (the
    # group's row of a feature is its distribution), instead of group by group: with several
    # groups that loop was the dearest part of the context (docs/web.md#speed, session 7).
    def table(self, name: str) -> np.ndarray:
        """One row per group (:data:`GROUPS`): the feature's cumulative shares (answers) or its
        quantiles (numbers) in the narrowest cell that has it. Made once per feature."""
        tables: dict[str, np.ndarray] = self.__dict__.setdefault("_tables", {})
        found = tables.get(name)
        if found is None:
            numeric = feature(name).is_numeric
            rows = [self.group(sex, age)[name] for sex, age in GROUPS]
            found = tables[name] = np.array(rows if numeric else [np.cumsum(r) for r in rows])
        return found

    def scores(self, names: Sequence[str], answers: dict[str, Any], groups: Sequence[int]) -> np.ndarray:
        """:func:`normal_score` of the known answers ``names`` (columns) in ``groups`` (rows)."""
        return np.array([[self._score(g, n, answers[n]) for n in names] for g in groups])

    def _score(self, group: int, name: str, value: Any) -> float:
        """One normal score, remembered: the same answers in the same groups come back request
        after request (0.65 ms of a request's CPU before they were, cProfile)."""
        remembered: dict[tuple[int, str, Any], float] = self.__dict__.setdefault("_scores", {})
        key = (group, name, value)
        found = remembered.get(key)
        if found is None:
            if len(remembered) >= _MAX_REMEMBERED:  # numbers (BMI) make keys without end: start again
                remembered.clear()
            found = remembered[key] = normal_score(feature(name), self.group(*GROUPS[group])[name], value)
        return found

    @cached_property
    def refit_pairs(self) -> np.ndarray:
        """:attr:`calibration_refits` as a (refits, 2) array (made once: every request needs it)."""
        return np.asarray(self.calibration_refits, dtype=float)

    @cached_property
    def correlation(self) -> np.ndarray:
        """:attr:`answer_correlation` as an array (made once)."""
        return np.asarray(self.answer_correlation, dtype=float)

    def _percentile_grid(self, sex: str | None, age: str | None) -> tuple[str, list[float]]:
        """The narrowest stored cell of (sex, age) and its percentiles, found once each (a list:
        one person's lookup is cheaper in plain Python than in numpy)."""
        grids: dict[tuple[Any, Any], tuple[str, list[float]]] = self.__dict__.setdefault("_grids", {})
        found = grids.get((sex, age))
        if found is None:
            key = next(k for k in cells_for(sex, age) if k in self.risk_percentiles)
            found = grids[(sex, age)] = key, [float(v) for v in self.risk_percentiles[key]]
        return found

    def percentile(self, risk: float, sex: str | None, age: str | None) -> tuple[float, str]:
        """Where ``risk`` stands in the narrowest stored cell of the person: (0..100, cell key)."""
        key, grid = self._percentile_grid(sex, age)
        first, last = bisect.bisect_left(grid, risk), bisect.bisect_right(grid, risk)
        if last > first:  # tied levels (many people share the lowest risks): their middle
            value = float(PERCENTILES[first:last].mean())
        elif first == 0:  # below the 1st
            value = 0.0
        elif first == len(grid):  # above the 99th
            value = 100.0
        else:  # between two levels: np.interp's rule
            low, high = grid[first - 1], grid[first]
            below, above = PERCENTILES[first - 1], PERCENTILES[first]
            value = (above - below) / (high - low) * (risk - low) + below
        return min(max(float(value), 0.0), 100.0), key


def build_reference(model: RiskModel, X: pd.DataFrame, X_holdout: pd.DataFrame, y_holdout: np.ndarray,
                    seed: int = 42) -> SurveyReference:
    """Aggregates of ``X`` (real training records, model input) scored by ``model``, and a bootstrap
    of its calibration on the held-out slice (``X_holdout``, ``y_holdout``)."""
    risk = model.risk(X, validate=False)
    sex, age = X["sex"].to_numpy(dtype=object), X["age_category"].to_numpy(dtype=object)
    percentiles: dict[str, list[float]] = {}
    answers: dict[str, dict[str, list[float]]] = {}
    scores = np.zeros((len(X), len(COPULA_FEATURES)))
    for s in (*SEX.values, None):
        for a in (*AGE.values, None):
            inside = np.ones(len(X), dtype=bool)
            if s is not None:
                inside &= sex == s
            if a is not None:
                inside &= age == a
            if inside.sum() < MIN_CELL and (s, a) != (None, None):
                continue
            key = cell_key(s, a)
            percentiles[key] = np.round(np.percentile(risk[inside], PERCENTILES), 6).tolist()
            answers[key] = _answer_distributions(X.loc[inside])
    reference = SurveyReference(records=len(X), risk_percentiles=percentiles, answers=answers,
                                calibration_refits=calibration_refits(model, X_holdout, y_holdout, seed),
                                answer_correlation=[])
    for (s, a), rows in X.groupby(["sex", "age_category"], dropna=False).groups.items():
        at = X.index.get_indexer(rows)
        for j, name in enumerate(COPULA_FEATURES):
            distribution = reference.distribution(name, _known(s), _known(a))
            scores[at, j] = normal_scores(feature(name), distribution, X[name].iloc[at].to_numpy())
    correlation = np.corrcoef(scores, rowvar=False) if len(X) > 2 else np.eye(len(COPULA_FEATURES))
    reference.answer_correlation = np.round(np.nan_to_num(correlation), 5).tolist()
    return reference


def _known(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def normal_scores(f: Any, distribution: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Answers -> standard normal scores under a stored distribution (the middle of an answer's share
    for answers and for tied numbers); Unknown -> 0, the middle."""
    values = np.asarray(values, dtype=object)
    known = np.array([_known(v) is not None for v in values], dtype=bool)
    u = np.full(len(values), 0.5)
    if f.is_numeric:
        x = np.array([float(v) for v in values[known]])
        first = np.searchsorted(distribution, x, "left")
        last = np.searchsorted(distribution, x, "right")
        tied = last > first
        # NUMBER_LEVELS are evenly spaced: the middle of tied levels is the mean of the outer two.
        middle = (NUMBER_LEVELS[np.minimum(first, len(NUMBER_LEVELS) - 1)]
                  + NUMBER_LEVELS[np.maximum(last - 1, 0)]) / 2
        u[known] = np.where(tied, middle, np.interp(x, distribution, NUMBER_LEVELS))
    else:
        below = np.r_[0.0, np.cumsum(distribution)[:-1]]
        middle = dict(zip(f.values, below + np.asarray(distribution) / 2, strict=True))
        u[known] = [middle.get(v, 0.5) for v in values[known]]
    return ndtri(np.clip(u, 0.005, 0.995))


def normal_score(f: Any, distribution: np.ndarray, value: Any) -> float:
    """:func:`normal_scores` of one known answer, without the array set-up (a request needs ~15)."""
    if f.is_numeric:
        x = float(value)
        first, last = np.searchsorted(distribution, x, "left"), np.searchsorted(distribution, x, "right")
        u = ((NUMBER_LEVELS[min(first, len(NUMBER_LEVELS) - 1)] + NUMBER_LEVELS[max(last - 1, 0)]) / 2
             if last > first else float(np.interp(x, distribution, NUMBER_LEVELS)))
    elif value in f.values:
        k = f.values.index(value)
        u = float(distribution[:k].sum() + distribution[k] / 2)
    else:
        u = 0.5
    return float(ndtri(min(max(u, 0.005), 0.995)))


def _answer_distributions(rows: pd.DataFrame) -> dict[str, list[float]]:
    """Per feature: shares of each allowed answer, or quantiles of a number (Unknowns left out)."""
    out: dict[str, list[float]] = {}
    for f in FEATURES:
        column = rows[f.name].dropna()
        if len(column) < MIN_CELL:
            continue
        if f.is_numeric:
            out[f.name] = np.round(np.quantile(column.astype(float), NUMBER_LEVELS), 4).tolist()
        else:
            counts = column.value_counts()
            shares = np.array([counts.get(v, 0) for v in f.values], dtype=float)
            out[f.name] = np.round(shares / shares.sum(), 6).tolist()
    return out


def calibration_refits(model: RiskModel, X_holdout: pd.DataFrame, y_holdout: np.ndarray,
                       seed: int, refits: int = CALIBRATION_REFITS) -> list[tuple[float, float]]:
    """Recalibrations of the shipped model refitted on bootstrap resamples of the held-out slice
    (stratified), the shipped one first: ``a * calibrated log-odds + b``, whichever calibration the
    version chose (none, Platt, isotonic; for Platt this equals refitting Platt on the raw margins).
    Their spread is how much the calibration itself could move a person's risk."""
    margin = model.calibration(raw_margin(model.pipeline, X_holdout))
    y = np.asarray(y_holdout).astype(int)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = [(1.0, 0.0)]
    for _ in range(refits - 1):
        pick = np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]
        fit = Platt.fit(margin[pick], y[pick])
        out.append((fit.slope, fit.intercept))
    return [(round(a, 6), round(b, 6)) for a, b in out]


def refit_risks(refits: list[tuple[float, float]] | np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Risks of calibrated log-odds ``margins`` under every stored recalibration: shape
    (refits, len(margins))."""
    pairs = np.asarray(refits, dtype=float)
    return sigmoid(pairs[:, :1] * np.asarray(margins)[None, :] + pairs[:, 1:])
