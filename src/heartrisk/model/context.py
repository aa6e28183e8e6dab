"""A risk put in context (issue 17): everything a person's result needs beyond the number.

For one person's answers this computes, with **one** batched call of the model (plus one per (sex, race)
whose healthy curve is not kept yet):

- the **100 people picture**: of 100 people who answer like you, about N reported heart disease;
- the **healthy peer**: same sex, age group and race (where answered), the healthy answer to every
  other question (:attr:`heartrisk.features.Feature.healthy`), and the person's risk as a multiple;
- the **peer percentile** among survey respondents of the same sex and age group (from the version's
  stored percentiles: :mod:`heartrisk.model.reference`);
- the **risk age**: the age at which the healthy profile reaches the person's risk, interpolated
  between the 13 age groups on the running maximum of the healthy profile's risk (so it never falls
  as the risk rises), capped at both ends and said so;
- the **what-if** entries: for each changeable answer, the risk of people otherwise like the person
  who give the healthier answer, largest fall first;
- the **uncertainty range** (5th-95th percentile): each Unknown answer drawn :data:`DRAWS` times
  from its distribution among people of the same sex and age group (a Latin hypercube, seeded, so a
  person always sees the same range), each draw scored under every stored calibration refit.

The rows (person, what-ifs, draws: 1-23 rows) are stacked and scored by ``margins`` in one call:
the web's compiled scorer or the model's pipeline (training uses the latter to measure the range's
coverage on test records, :mod:`heartrisk.model.card`). The healthy profile's 13 rows depend only on
sex and race, so :class:`HealthyCurves` scores them once per (sex, race) and keeps them: the web's
scorer keeps one per model version (a request then scores 13 rows fewer).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy.special import ndtri

from heartrisk.features import BY_NAME, FEATURE_NAMES, FEATURES, feature
from heartrisk.model.calibration import Calibration
from heartrisk.model.copula_draws import CopulaTables
from heartrisk.model.estimator import sigmoid
from heartrisk.model.reference import (
    COPULA_FEATURES,
    SurveyReference,
    group_ids,
    group_row,
    refit_risks,
)

#: Draws of the Unknown answers per person. 32 gave the same coverage as 128 on the dev data
#: (tests/model/test_context.py measures it) at a quarter of the rows; 16 the same as 32 on the full
#: champion (bench/range_coverage.py, 300 records x 5 numbers of Unknowns x 3 seeds: 92.4 % against
#: 92.6 % overall, 86.7-97.3 % against 87.7-97.7 % per number), a point wider, at ~0.7 ms less CPU.
DRAWS = 16
#: The range's percentiles.
RANGE = (5.0, 95.0)
DRAW_SEED = 17

Answers = dict[str, Any]
#: Rows given column by column (feature -> one answer per row): a request's rows share most answers,
#: so they are built, and encoded, a column at a time.
Columns = dict[str, list[Any]]
#: (columns, number of rows) -> the rows' uncalibrated log-odds.
Margins = Callable[[Columns, int], np.ndarray]

AGE = feature("age_category")


def band_years(label: str) -> float:
    """The middle of an age group in years (``"65-69"`` -> 67); the open top group is its start."""
    if "-" in label:
        low, high = label.split("-")
        return (float(low) + float(high)) / 2
    return float(label.split()[0])


AGE_YEARS = np.array([band_years(v) for v in AGE.values])
AGE_YEARS_LIST = AGE_YEARS.tolist()


# ------------------------------------------------------------------------------------ the result
class HealthyPeer(BaseModel):
    """Someone of the same sex, age group and race who gives the healthy answer to everything else."""

    probability: float = Field(description="the healthy peer's risk, 0..1 (same meaning as `probability`)")
    ratio: float = Field(description="the person's risk divided by the healthy peer's")
    answers: dict[str, Any] = Field(
        description="the healthy peer's answers: the person's sex, age group and race (the model's "
                    "assumed value where Unknown; race left Unknown stays Unknown) and the healthy "
                    "answer of the feature spec to every other question")


class PeerPercentile(BaseModel):
    """Where the person's risk stands among survey respondents like them."""

    percentile: float = Field(description="share (0..100) of the group whose risk is lower than the "
                                          "person's; from percentiles stored with the model version")
    group: str = Field(description="the group compared with: `sex|age group`, `*` where the person's "
                                   "answer was Unknown (then a wider group is used)")


class RiskAge(BaseModel):
    """The age at which the healthy peer's risk reaches the person's."""

    years: float = Field(description="age in years, interpolated between the middles of the 13 age "
                                     "groups (18-24 counts as 21, 80 or older as 80)")
    age_group: str = Field(description="the age group that age falls in")
    capped: Literal["younger", "older"] | None = Field(
        description="`younger`: the risk is below a healthy 18-24-year-old's, so the risk age is "
                    "shown as the youngest group; `older`: above a healthy 80-year-old's, shown as "
                    "80 or older; null: not capped")
    healthy_by_age: list[float] = Field(
        description="the healthy profile's risk at each of the 13 age groups, in order")


class WhatIf(BaseModel):
    """The risk of people otherwise like the person who give a healthier answer to one question."""

    feature: str = Field(description="the question's name in the feature spec")
    question: str = Field(description="the question as the form asks it")
    answer: Any = Field(description="the person's answer")
    healthier: Any = Field(description="the healthier answer compared with")
    probability: float = Field(description="risk with the healthier answer, everything else as answered")
    difference: float = Field(description="the person's risk minus this one: positive means people with "
                                          "the healthier answer have a lower risk (an association "
                                          "between groups, not a promise)")


class RiskRange(BaseModel):
    """How uncertain the risk is: Unknown answers and the model's own calibration."""

    low: float = Field(description="5th percentile of the risk over the Unknown answers' likely "
                                   "values and the calibration refits (never above `probability`)")
    high: float = Field(description="95th percentile of the same (never below `probability`)")
    unknowns: int = Field(description="number of questions answered Unknown")
    draws: int = Field(description="risks the range was taken over (draws x calibration refits)")


class IconArray(BaseModel):
    """The 100 people picture: counts out of 100 people who answer like the person."""

    people: int = Field(100, description="size of the crowd")
    with_disease: int = Field(description="about how many reported heart disease (the risk x 100, rounded)")
    low: int = Field(description="the range's low end x 100, rounded")
    high: int = Field(description="the range's high end x 100, rounded")
    healthy_peer: int = Field(description="about how many of 100 healthy peers reported it")


class RiskContext(BaseModel):
    """The risk put in context: picture, healthy peer, percentile, risk age, what-if, range."""

    probability: float = Field(description="the person's risk (equals the prediction's `probability`)")
    icons: IconArray
    healthy_peer: HealthyPeer
    percentile: PeerPercentile
    risk_age: RiskAge
    what_if: list[WhatIf] = Field(description="one entry per answer the person can change and did "
                                              "not give the healthy answer to; largest fall first")
    range: RiskRange


# ------------------------------------------------------------------------------------ the plan
@dataclass
class Plan:
    """The rows to score for one person and where each part of the result sits among them."""

    answers: Answers
    columns: Columns
    size: int
    peer: Answers  # the healthy peer's answers
    peer_index: int  # among the healthy-profile rows
    curve: tuple[Any, Any]  # the healthy profile's (sex, race): its key in HealthyCurves
    what_if: list[tuple[str, Any]]
    draws: int  # 0 when every question was answered


def curve_key(answers: Answers, imputation: dict[str, Any]) -> tuple[Any, Any]:
    """The (sex, race) of a person's healthy profile: their sex (or the assumed one) and race."""
    return answers.get("sex") or imputation["sex"], answers.get("race")


HEALTHY: Answers = {f.name: f.healthy for f in FEATURES}


def healthy_peer(sex: Any, race: Any, age: Any) -> Answers:
    """The healthy answer to every question but sex, race and age group."""
    return {**HEALTHY, "sex": sex, "race": race, "age_category": age}


def healthy_profile(sex: Any, race: Any) -> list[Answers]:
    """The healthy peer of this sex and race at each age group."""
    return [healthy_peer(sex, race, age) for age in AGE.values]


class HealthyCurves:
    """The healthy profile's margins at each age group, scored once per (sex, race) and kept.

    Every person of a sex and race shares these 13 rows, so there are at most 14 curves per model
    version. Filling the dict from two threads at once only scores a curve twice.
    """

    def __init__(self, margins: Margins) -> None:
        self._margins = margins
        self._curves: dict[tuple[Any, Any], np.ndarray] = {}

    def __call__(self, key: tuple[Any, Any]) -> np.ndarray:
        found = self._curves.get(key)
        if found is None:
            profile = healthy_profile(*key)
            columns = {name: [row[name] for row in profile] for name in FEATURE_NAMES}
            found = self._curves[key] = np.asarray(self._margins(columns, len(profile)), dtype=float)
        return found

    def risks(self, key: tuple[Any, Any], calibration: Calibration) -> list[float]:
        """The curve's calibrated risks, kept too (a request needs them, not the margins)."""
        kept: dict[tuple[Any, Any], tuple[Calibration, list[float]]] = self.__dict__.setdefault("_risks", {})
        found = kept.get(key)
        if found is None or found[0] is not calibration:
            found = kept[key] = calibration, sigmoid(calibration(self(key))).tolist()
        return found[1]


def what_if_changes(answers: Answers) -> list[tuple[str, Any]]:
    """(feature, healthier answer) for each changeable answer that is not already the healthy one."""
    changes = []
    for f in FEATURES:
        healthier = f.healthier(answers.get(f.name))
        if healthier is not None:
            changes.append((f.name, healthier))
    return changes


def draw_unknowns(answers: Answers, reference: SurveyReference, draws: int = DRAWS,
                  seed: int = DRAW_SEED) -> Columns:
    """Each Unknown answer drawn ``draws`` times given the known ones (Unknown -> its draws).

    Sex and age group, when Unknown, are drawn first (from the wider group the known one allows);
    then each draw's own sex x age group gives race and, through the stored copula
    (:mod:`heartrisk.model.reference`), the other Unknowns *given the person's known answers*: a
    conditional normal draw of their scores, turned back into answers by the group's distributions.
    (Drawing everything from the wider group when sex or age was Unknown was 0.4 ms cheaper but lost
    how answers depend on age: coverage with 10 Unknowns fell from 0.80-0.83 to 0.74-0.83.)
    The draws of all groups are worked out together, each row with its own group's row of the
    reference's tables. Stratified (each Unknown's draws cover its distribution evenly, in a seeded
    random order), so few draws suffice and the range is the same every time.
    """
    unknown = [f.name for f in FEATURES if answers.get(f.name) is None]
    levels = dict(zip(unknown, _strata(len(unknown), draws, seed), strict=True))
    wide = reference.group(answers.get("sex"), answers.get("age_category"))
    drawn: Columns = {}
    at: dict[str, np.ndarray | int] = {}  # sex and age group: the answer's index (in each draw)
    for name in ("sex", "age_category"):
        f = BY_NAME[name]
        if name in levels:
            at[name] = _category_index(wide[name].cumsum()[None, :], levels[name])
            drawn[name] = [f.values[i] for i in at[name]]  # type: ignore[union-attr]
        else:
            at[name] = f.values.index(answers[name])
    if "sex" in levels or "age_category" in levels:
        sexes, ages = (np.broadcast_to(at[n], draws) for n in ("sex", "age_category"))
        cells, where = np.unique(group_ids(sexes, ages), return_inverse=True)
    else:  # the usual case: one group
        cells = np.array([group_row(int(at["sex"]), int(at["age_category"]))])  # type: ignore[call-overload]
        where = np.zeros(draws, dtype=np.intp)
    copula = _Conditional.of(reference, tuple(name for name in COPULA_FEATURES if name in levels))
    drawn.update(copula.draw(reference, answers, cells, where, levels, (tuple(unknown), draws, seed)))
    if "race" in levels:
        rows = reference.table("race")[cells]
        index = _category_index(rows if len(cells) == 1 else rows[where], levels["race"])
        drawn["race"] = [BY_NAME["race"].values[i] for i in index]
    return drawn


@functools.cache
def _strata(unknowns: int, draws: int, seed: int) -> np.ndarray:
    """The stratified levels of ``unknowns`` answers (one row each): they depend only on how many
    there are, so they are made once per count (a generator and a sort were 0.03 ms of a request)."""
    rng = np.random.default_rng(seed)
    strata = (np.argsort(rng.random((unknowns, draws)), axis=1) + 0.5) / draws
    strata.flags.writeable = False
    return strata


@dataclass
class _Conditional:
    """The copula's Unknown scores given the known ones: ``mean = weights @ z_known`` and a square
    root of the covariance; they depend only on which answers are Unknown, so a person's groups
    (when sex or age group is Unknown) share one."""

    missing: list[str]
    known: list[str]
    weights: np.ndarray
    root: np.ndarray
    features: np.ndarray  # the missing answers' places in COPULA_FEATURES
    shifts: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, reference: SurveyReference, missing: tuple[str, ...]) -> _Conditional:
        """The conditional of the ``missing`` scores, made once per set of Unknowns and kept with
        the reference (a linear solve and an eigendecomposition: 0.25 ms of a request before)."""
        made: dict[tuple[str, ...], _Conditional] = reference.__dict__.setdefault("_conditionals", {})
        found = made.get(missing)
        if found is None:
            if len(made) >= 4096:  # 2^14 sets of Unknowns are possible; a few dozen are common
                made.clear()
            found = made[missing] = cls._solve(reference, list(missing))
        return found

    @classmethod
    def _solve(cls, reference: SurveyReference, missing: list[str]) -> _Conditional:
        names = list(COPULA_FEATURES)
        m = [names.index(n) for n in missing]
        k = [j for j in range(len(names)) if j not in m]
        corr = reference.correlation
        rows_m = corr[m]
        s_mk, s_kk = rows_m[:, k], corr[k][:, k]
        weights = np.linalg.solve(s_kk, s_mk.T).T if k else np.zeros((len(m), 0))
        root = _square_root(rows_m[:, m] - weights @ s_mk.T) if m else np.zeros((0, 0))
        return cls(missing, [names[j] for j in k], weights, root, np.array(m, dtype=np.int64))

    def draw(self, reference: SurveyReference, answers: Answers, cells: np.ndarray, at: np.ndarray,
             levels: dict[str, np.ndarray], key: tuple[Any, ...]) -> dict[str, list[Any]]:
        """The Unknown copula answers at stratified ``levels``, draw ``d`` in (sex, age) group
        ``cells[at[d]]`` (rows of the reference's tables), given the person's known answers;
        ``key`` names the levels (the Unknowns, the draws and the seed that made them)."""
        if not self.missing:
            return {}
        if self.known:  # the known answers' scores in each group -> the conditional mean
            mean = reference.scores(self.known, answers, cells.tolist()) @ self.weights.T
        else:
            mean = np.zeros((len(cells), len(self.missing)))
        found = CopulaTables.of(reference).draw(self.features, self._shift(levels, key), mean, cells, at)
        return {n: _answers(BY_NAME[n], found[:, c]) for c, n in enumerate(self.missing)}

    def _shift(self, levels: dict[str, np.ndarray], key: tuple[Any, ...]) -> np.ndarray:
        """The draws' scores before the mean: the stratified levels' normal scores times the root
        (they depend only on which answers are Unknown: kept per set, a few dozen are common)."""
        found = self.shifts.get(key)
        if found is None:
            if len(self.shifts) >= 64:
                self.shifts.clear()
            found = self.shifts[key] = ndtri(np.column_stack([levels[n] for n in self.missing])) @ self.root.T
        return found


def _answers(f: Any, drawn: np.ndarray) -> list[Any]:
    """A column of :meth:`CopulaTables.draw` as answers: numbers as they are, indices as answers."""
    if f.is_numeric:
        return drawn.tolist()
    return [f.values[int(i)] for i in drawn]


def _square_root(cov: np.ndarray) -> np.ndarray:
    """A square root of a conditional covariance (eigenvalues floored: rounding can leave it a hair
    short of positive semi-definite)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _category_index(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The answer each level ``u[i]`` falls in under row ``i`` of ``cumulative`` (or its one row):
    ``searchsorted(side="right")``, capped at the last answer."""
    found = (cumulative <= u[:, None]).sum(axis=1)
    return np.minimum(found, cumulative.shape[1] - 1)


def plan(answers: Answers, imputation: dict[str, Any], reference: SurveyReference) -> Plan:
    """The rows one person's context needs, column by column: the person, one row per what-if, the
    draws of the Unknowns (see the module docstring); the healthy profile is :class:`HealthyCurves`'."""
    answers = {f.name: answers.get(f.name) for f in FEATURES}
    curve = curve_key(answers, imputation)
    age = answers.get("age_category") or imputation["age_category"]
    changes = what_if_changes(answers)
    unknowns = sum(v is None for v in answers.values())
    drawn = draw_unknowns(answers, reference) if unknowns else {}
    draws = DRAWS if unknowns else 0
    columns: Columns = {}
    for name, mine in answers.items():
        changed = [value if what == name else mine for what, value in changes]
        columns[name] = [mine, *changed, *drawn.get(name, [mine] * draws)]
    peer_index = AGE.values.index(age)
    return Plan(answers, columns, 1 + len(changes) + draws, healthy_peer(*curve, age), peer_index,
                curve, changes, draws)


# ------------------------------------------------------------------------------------ the numbers
def risk_age(probability: float, healthy_by_age: np.ndarray | Sequence[float]) -> RiskAge:
    """Where the healthy profile's risk curve (made non-decreasing) reaches ``probability``.

    Plain Python on the 13 numbers: numpy's set-up cost more than the arithmetic."""
    healthy = [float(v) for v in healthy_by_age]
    curve = list(itertools.accumulate(healthy, max))
    capped: Literal["younger", "older"] | None = None
    if probability < curve[0]:
        position, capped = 0.0, "younger"
    elif probability > curve[-1]:
        position, capped = float(len(curve) - 1), "older"
    else:
        upper = bisect.bisect_left(curve, probability)
        if upper == 0 or curve[upper] == curve[upper - 1]:
            position = float(upper)
        else:
            lower = upper - 1
            position = lower + (probability - curve[lower]) / (curve[upper] - curve[lower])
    years = _interpolate(AGE_YEARS_LIST, position)
    group = AGE.values[bisect.bisect_right(AGE_YEARS_LIST, years + 1e-9) - 1]
    return RiskAge(years=round(years, 1), age_group=group, capped=capped, healthy_by_age=healthy)


def _interpolate(values: Sequence[float], position: float) -> float:
    """``values`` read at a fractional index (np.interp on 0, 1, 2, ...; ends held)."""
    if position <= 0:
        return float(values[0])
    last = len(values) - 1
    if position >= last:
        return float(values[last])
    i = int(position)
    return (values[i + 1] - values[i]) * (position - i) + values[i]


def finish(p: Plan, margins: np.ndarray, healthy: list[float], calibration: Calibration,
           reference: SurveyReference) -> RiskContext:
    """The context of one planned person from the margins of its rows and its healthy curve's risks."""
    log_odds = calibration(margins)
    risks = sigmoid(log_odds)
    probability = float(risks[0])
    peer = healthy[p.peer_index]
    changed = risks[1:1 + len(p.what_if)]  # the rows after the person's own
    what_if = [
        WhatIf(feature=name, question=BY_NAME[name].question, answer=p.answers[name], healthier=value,
               probability=float(risk), difference=probability - float(risk))
        for (name, value), risk in zip(p.what_if, changed, strict=True)
    ]
    what_if.sort(key=lambda w: -w.difference)
    drawn = log_odds[1 + len(p.what_if):] if p.draws else log_odds[:1]
    spread = np.sort(refit_risks(reference.refit_pairs, drawn).ravel())
    low, high = (_interpolate(spread, q / 100 * (len(spread) - 1))
                 for q in RANGE)  # np.percentile's linear rule, without its set-up cost
    low, high = min(float(low), probability), max(float(high), probability)
    percentile, group = reference.percentile(probability, p.answers["sex"], p.answers["age_category"])
    peer_answers = dict(p.peer)
    return RiskContext(
        probability=probability,
        icons=IconArray(with_disease=_of_100(probability), low=_of_100(low), high=_of_100(high),
                        healthy_peer=_of_100(peer)),
        healthy_peer=HealthyPeer(probability=peer, ratio=probability / peer if peer > 0 else float("inf"),
                                 answers=peer_answers),
        percentile=PeerPercentile(percentile=round(percentile, 1), group=group),
        risk_age=risk_age(probability, healthy),
        what_if=what_if,
        range=RiskRange(low=low, high=high, unknowns=sum(v is None for v in p.answers.values()),
                        draws=len(spread)),
    )


def _of_100(probability: float) -> int:
    return round(100 * probability)


def contexts(people: Sequence[Answers], margins: Margins, calibration: Calibration,
             imputation: dict[str, Any], reference: SurveyReference,
             curves: HealthyCurves | None = None) -> list[RiskContext]:
    """The context of each person; all their rows are scored in one call of ``margins``, and the
    healthy curves not yet in ``curves`` (a fresh :class:`HealthyCurves` when None) in one each."""
    return contexts_and_rows(people, margins, calibration, imputation, reference, curves)[0]


def contexts_and_rows(people: Sequence[Answers], margins: Margins, calibration: Calibration,
                      imputation: dict[str, Any], reference: SurveyReference,
                      curves: HealthyCurves | None = None) -> tuple[list[RiskContext], list[int]]:
    """:func:`contexts`, and where each person's own answers sit among the rows given to
    ``margins``: the web's scorer explains those rows instead of encoding the person again."""
    curves = curves or HealthyCurves(margins)
    plans = [plan(a, imputation, reference) for a in people]
    columns = (plans[0].columns if len(plans) == 1  # a request: no copy
               else {name: [v for p in plans for v in p.columns[name]] for name in FEATURE_NAMES})
    scored = np.asarray(margins(columns, sum(p.size for p in plans)), dtype=float)
    out, starts, start = [], [], 0
    for p in plans:
        out.append(finish(p, scored[start:start + p.size], curves.risks(p.curve, calibration), calibration,
                          reference))
        starts.append(start)
        start += p.size
    return out, starts
