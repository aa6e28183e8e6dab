"""The model card (issue 17): what a version is for, and how well it does for whom.

Computed at training time on the real test records and stored with the version
(:attr:`RiskModel.card`, also logged to the MLflow run as ``model_card.json``); the public ``/model``
page renders what the champion carries. Holds metrics overall and by sex, age group and race (ROC-AUC,
PR-AUC, observed and mean predicted rate), the calibration by decile, and the measured coverage of the
uncertainty range: test records with answers blanked at random, the risk with the true answers
inside the range of the blanked ones (:func:`range_coverage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from heartrisk.features import FEATURE_NAMES, feature
from heartrisk.model.context import Answers, contexts
from heartrisk.model.estimator import RiskModel, model_input, raw_margin
from heartrisk.model.evaluation import average_precision, reliability
from heartrisk.model.reference import SurveyReference
from heartrisk.model.reliability import Reliability

#: Subgroups the card reports metrics for.
SUBGROUPS: tuple[str, ...] = ("sex", "age_category", "race")
#: Numbers of blanked answers the coverage is measured at.
COVERAGE_UNKNOWNS: tuple[int, ...] = (1, 2, 3, 5, 8)
#: Fewest records of each outcome for a subgroup's ROC-AUC and PR-AUC to be reported.
MIN_OUTCOMES = 10

#: The one-paragraph scope every page and the API docs share: who it is for and what the number means.
SCOPE = (
    "For US adults, from 17 answers to the CDC's 2020 telephone health survey (BRFSS). The number is "
    "how common coronary heart disease or a heart attack is among survey respondents who answer like "
    "you: the share who had ever been told they had it. It is not your chance of a heart attack in "
    "the next 10 years, and it is not a diagnosis."
)
INTENDED_USE = (
    "For adults in the United States who want to see how common coronary heart disease or a heart "
    "attack is among people who answer 17 survey questions as they do. Not for diagnosis, not for "
    "treatment decisions, not for children, and not a prediction of a future heart attack."
)
LABEL_MEANING = (
    "The label is the answer to \"Has a doctor, nurse or other health professional ever told you that "
    "you had coronary heart disease or a heart attack?\" in the CDC's 2020 Behavioral Risk Factor "
    "Surveillance System (BRFSS), a telephone survey of US adults. The model's number is therefore the "
    "share of people answering like you who had ever been told so: how common the disease is among "
    "them, not a 10-year risk of a future event as in QRISK3, PREVENT or the ASCVD estimator."
)
LIMITATIONS = (
    "Answers are self-reported and the label is a past diagnosis: people who were diagnosed may have "
    "changed their habits since, so what-if differences are associations between groups, not effects "
    "of a change.",
    "The survey reached US adults by telephone in 2020; people without a telephone, in institutions, "
    "or outside the US are not represented, and small groups (some races, the youngest ages) have few "
    "records with heart disease, so their metrics below are noisy.",
    "Race is a social category recorded by the survey; it stands in for many unmeasured things and is "
    "not a biological cause.",
    "Blood pressure, cholesterol and family history, which clinical calculators use, were not asked.",
    "The uncertainty range covers Unknown answers and the calibration, not every source of error.",
)


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    positives = int(y.sum())
    enough = positives >= MIN_OUTCOMES and len(y) - positives >= MIN_OUTCOMES
    return {
        "records": len(y), "with_disease": positives,
        "roc_auc": float(roc_auc_score(y, p)) if enough else None,
        "pr_auc": average_precision(y, p) if enough else None,
        "observed_rate": float(y.mean()) if len(y) else None,
        "predicted_rate": float(p.mean()) if len(y) else None,
    }


def subgroup_metrics(X: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """Per subgroup feature, one row per answer (in the spec's order) with its metrics."""
    y = np.asarray(y).astype(int)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SUBGROUPS:
        column = X[name].to_numpy(dtype=object)
        out[name] = [{"group": value, **_metrics(y[column == value], p[column == value])}
                     for value in feature(name).values if (column == value).any()]
    return out


def rows_as_answers(X: pd.DataFrame) -> list[Answers]:
    """Model-input rows as answer dicts (NaN -> None)."""
    frame = X.loc[:, list(FEATURE_NAMES)].astype(object)
    return [{k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
             for k, v in row.items()} for row in frame.to_dict("records")]


def pipeline_margins(model: RiskModel) -> Any:
    """Raw margins of answer rows through the model's own pipeline (training side; no web scorer)."""
    def margins(columns: dict[str, list[Any]], n: int) -> np.ndarray:
        frame = pd.DataFrame(columns, columns=list(FEATURE_NAMES))
        return raw_margin(model.pipeline, model_input(frame, validate=False))
    return margins


def range_coverage(model: RiskModel, reference: SurveyReference, X: pd.DataFrame, per_count: int = 300,
                   unknowns: Sequence[int] = COVERAGE_UNKNOWNS, seed: int = 0) -> list[dict[str, Any]]:
    """Blank ``k`` answers at random in ``per_count`` records for each ``k``; how often the risk with
    the true answers lies inside the range computed from the blanked ones, and the mean width."""
    rng = np.random.default_rng(seed)
    complete = X.dropna().reset_index(drop=True)
    truth_all = model.risk(complete, validate=False)
    answers = rows_as_answers(complete)
    out = []
    for k in unknowns:
        picked = rng.choice(len(complete), min(per_count, len(complete)), replace=False)
        blanked = []
        for i in picked:
            row = dict(answers[i])
            for name in rng.choice(FEATURE_NAMES, k, replace=False):
                row[str(name)] = None
            blanked.append(row)
        found = contexts(blanked, pipeline_margins(model), model.calibration, model.imputation(),
                         reference)
        truth = truth_all[picked]
        low = np.array([c.range.low for c in found])
        high = np.array([c.range.high for c in found])
        inside = (low - 1e-12 <= truth) & (truth <= high + 1e-12)
        out.append({"unknowns": int(k), "records": len(picked), "coverage": float(inside.mean()),
                    "mean_width": float((high - low).mean())})
    return out


def build_card(model: RiskModel, reference: SurveyReference, X_test: pd.DataFrame, y_test: np.ndarray,
               p_test: np.ndarray, data: dict[str, Any], coverage_records: int = 300,
               seed: int = 0) -> dict[str, Any]:
    """The card's figures (JSON-ready); ``data`` names the feature group, its version and row counts."""
    y = np.asarray(y_test).astype(int)
    mean_p, rate, count = reliability(y, p_test, bins=10)
    return {
        "intended_use": INTENDED_USE,
        "label": LABEL_MEANING,
        "limitations": list(LIMITATIONS),
        "data": data,
        "overall": _metrics(y, p_test),
        "subgroups": subgroup_metrics(X_test, y, p_test),
        "calibration": {"mean_predicted": mean_p.tolist(), "observed": rate.tolist(),
                        "records": [int(c) for c in count]},
        "reliability_at_threshold": Reliability.build(y, p_test, model.threshold).to_dict(),
        "range_coverage": range_coverage(model, reference, X_test, coverage_records, seed=seed),
    }
