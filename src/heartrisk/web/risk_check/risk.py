"""Answers in, a person's risk out: the one piece of logic the JSON API and the form share.

The answers reaching here were already checked against the spec (the pydantic schema or the form's
validator), so the :class:`~heartrisk.web.risk_check.scorer.Scorer` does not check them a second time.
"""

from __future__ import annotations

from typing import Any

from heartrisk.features import BY_NAME, FEATURE_NAMES
from heartrisk.monitoring.served_profile import ServingProfile
from heartrisk.web.risk_check.schemas import Factor, Prediction, risk_band
from heartrisk.web.risk_check.scorer import Scorer


def score(scorer: Scorer, rows: list[dict[str, Any]], with_explanations: bool = True,
          with_context: bool = True, profile: ServingProfile | None = None) -> list[Prediction]:
    """Risk, band, decision, explanation, imputed values and (if asked) the risk in context for
    each row of answers. The person's rows and the context's are scored in one call of the model
    (and a healthy curve not yet kept for the person's sex and race in one more).

    With a ``profile``, each row answered is counted in the serving profile (aggregates only)."""
    model = scorer.loaded
    if with_context:
        scored, found = scorer.score_in_context(rows, with_explanations)
    else:
        scored, found = scorer.score(rows, with_explanations), None
    results = []
    for i, row in enumerate(rows):
        p = float(scored.probabilities[i])
        contributions = factors = None
        if scored.contributions is not None:
            contributions = dict(zip(FEATURE_NAMES, scored.contributions[i].tolist(), strict=True))
            factors = factor_list(contributions, row)
        results.append(Prediction(
            probability=p,
            risk_band=risk_band(p, model.base_rate),
            base_rate=model.base_rate,
            prediction=p >= model.threshold,
            threshold=model.threshold,
            model_version=model.version,
            contributions=contributions,
            base_value=scored.base_value,
            factors=factors,
            imputed={name: scorer.imputation[name] for name in FEATURE_NAMES if row.get(name) is None},
            context=found[i] if found else None,
        ))
        if profile is not None:
            profile.record(row, p, p >= model.threshold, model.version)
    return results


def factor_list(contributions: dict[str, float], answers: dict[str, Any]) -> list[Factor]:
    """The contributions as factors a person can read, the largest effect first."""
    factors = [Factor(feature=name, question=BY_NAME[name].question, answer=answers.get(name),
                      contribution=value) for name, value in contributions.items()]
    return sorted(factors, key=lambda f: -abs(f.contribution))
