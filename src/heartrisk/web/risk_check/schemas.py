"""Request and response bodies of the JSON API, generated from the feature spec.

:class:`Answers` has one optional field per feature of :data:`heartrisk.features.FEATURES`, typed by
its kind (a number with its range, or one of its allowed answers), with the question and help text as
the field's description, so ``/docs`` reads like the form. ``null`` or a missing field means Unknown.
Types are strict: ``"25"`` is not a number and ``true`` is not a count of days, so a program that
sends the wrong type hears about it instead of being silently coerced.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    create_model,
)

from heartrisk.features import FEATURE_NAMES, FEATURES, LABEL, Feature

RiskBand = Literal["lower", "average", "higher", "much higher"]

#: A person's risk divided by the population base rate -> band; each band's upper edge.
RISK_BANDS: tuple[tuple[float, RiskBand], ...] = (
    (0.67, "lower"),
    (1.5, "average"),
    (3.0, "higher"),
    (math.inf, "much higher"),
)


def risk_band(probability: float, base_rate: float) -> RiskBand:
    """Where a risk sits relative to the population's: what "12 %" means depends on the base rate."""
    ratio = probability / base_rate if base_rate > 0 else math.inf
    return next(band for edge, band in RISK_BANDS if ratio < edge)


def _whole(feature: Feature):
    def check(value: float | None) -> float | None:
        if value is not None and not float(value).is_integer():
            raise ValueError(f"must be a whole number ({feature.describe_allowed()})")
        return value
    return check


def _description(feature: Feature) -> str:
    parts = [feature.question, feature.help]
    if feature.unit:
        parts.append(f"Unit: {feature.unit}.")
    parts.append(f"Accepts {feature.describe_allowed()}, or null for Unknown.")
    return " ".join(p for p in parts if p)


def answer_type(feature: Feature) -> Any:
    """The pydantic type of one answer: a strict number in range, or one of the allowed answers."""
    if feature.is_numeric:
        checks: list[Any] = [Field(ge=feature.low, le=feature.high, allow_inf_nan=False)]
        if feature.whole:
            checks.append(AfterValidator(_whole(feature)))
        return Annotated[StrictFloat | None, *checks]
    return Literal[feature.values] | None  # type: ignore[valid-type]


def _answer_field(feature: Feature) -> tuple[Any, Any]:
    example = (feature.low + feature.high) / 2 if feature.is_numeric else feature.values[0]
    if feature.whole:
        example = round(example)
    return answer_type(feature), Field(
        default=None, title=feature.question, description=_description(feature), examples=[example],
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: The 17 answers, each optional (null = Unknown). Built from the spec, never listed by hand.
Answers: type[BaseModel] = create_model(
    "Answers",
    __base__=_Strict,
    __doc__="The survey answers; any may be null or left out, meaning Unknown.",
    **{f.name: _answer_field(f) for f in FEATURES},
)


def answers_dict(body: BaseModel) -> dict[str, Any]:
    """feature -> answer (None = Unknown) for every feature, in spec order."""
    values = {name: getattr(body, name) for name in FEATURE_NAMES}
    return values


def _agreed(value: bool) -> bool:
    """Consent is the JSON ``true`` and nothing else. ``Literal[True]`` took ``1`` as well (pydantic
    compares literals by equality, and ``1 == True``), although the API's types are strict."""
    if value is not True:
        raise ValueError("must be true: nothing is stored without the person's consent")
    return value


SubmissionRequest: type[BaseModel] = create_model(
    "SubmissionRequest",
    __base__=Answers,
    __doc__=("The answers and the diagnosis a person chose to share, with their consent. "
             "Stored as answered (Unknown stays null); no address or identifier is kept."),
    heart_disease=(StrictBool, Field(
        title=LABEL.question, description=f"{LABEL.question} {LABEL.help} true or false.")),
    consent=(Annotated[StrictBool, AfterValidator(_agreed)], Field(
        json_schema_extra={"const": True},
        description="Must be true (the JSON value; 1 or \"true\" are refused): the person agrees that "
                    "these answers and the diagnosis are stored anonymously and used as the web form's "
                    "consent text says (by default to check and improve the risk model only; the "
                    "server's consent scope setting can add the synthetic-data generator, and the form "
                    "then says so).")),
)


class Factor(BaseModel):
    """How much one answer moved the risk (SHAP, calibrated log-odds; positive raises it)."""

    feature: str
    question: str
    answer: Any = Field(description="the answer given, or null if Unknown")
    contribution: float


class Prediction(BaseModel):
    """A person's risk, how it compares, why, and what the model assumed for the Unknowns."""

    probability: float = Field(description="calibrated probability of heart disease, 0..1")
    risk_band: RiskBand = Field(description="the risk relative to the population base rate")
    base_rate: float = Field(description="share of heart disease in the training population")
    prediction: bool = Field(description="probability >= threshold")
    threshold: float
    model_version: str
    contributions: dict[str, float] | None = Field(
        default=None, description="feature -> SHAP contribution in log-odds (null if not asked for)")
    base_value: float | None = Field(
        default=None, description="log-odds the contributions start from: "
                                  "base_value + sum(contributions) = logit(probability)")
    factors: list[Factor] | None = Field(
        default=None, description="the contributions with question and answer, largest effect first")
    imputed: dict[str, Any] = Field(description="feature -> value used in place of each Unknown answer")


class SubmissionCreated(BaseModel):
    submission_id: str


class ModelInfo(BaseModel):
    version: str
    family: str
    trained_at: datetime
    threshold: float
    base_rate: float
    metrics: dict[str, float]
    feature_group: str
    feature_group_version: int


class Health(BaseModel):
    status: Literal["ok", "no model"]
    model_version: str | None
    detail: str | None = None


class ErrorField(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: one readable line and, for invalid input, the field(s) at fault."""

    detail: str
    errors: list[ErrorField] = Field(default_factory=list)
