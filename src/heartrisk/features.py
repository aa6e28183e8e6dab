"""The feature spec: the one place that knows the 17 questions and the label.

Everything else derives from it: the CSV loader (Kaggle column names), validation (kinds, allowed
values, ranges), the Delta schema, the web form and API schema (question and help text), and the
synthesizer's repair step. If a change touches the list of features in two places, it is in the
wrong place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["number", "binary", "category", "ordinal"]

YES_NO: tuple[str, ...] = ("No", "Yes")


@dataclass(frozen=True)
class Feature:
    """One survey answer: how it is named, what it may hold and how a person is asked for it."""

    name: str
    column: str
    kind: Kind
    question: str
    help: str = ""
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    whole: bool = False
    unit: str = ""
    #: The healthy answer (issue 17): what the "healthy peer" answers. None for who a person is
    #: (sex, age group, race), which the peer shares with the person.
    healthy: str | float | None = None
    #: Numbers: the healthy range (BMI 18.5-24.9, sleep 7-8 h); a what-if moves to its nearest end.
    healthy_range: tuple[float, float] | None = None
    #: Whether a person can change this answer (habits, weight, sleep, how they rate their health):
    #: only these get a what-if. A diagnosis, age, sex or race never does.
    changeable: bool = False

    @property
    def is_numeric(self) -> bool:
        return self.kind == "number"

    @property
    def is_categorical(self) -> bool:
        return self.kind != "number"

    def describe_allowed(self) -> str:
        """Human wording of what the feature accepts, used in every error message."""
        if self.is_numeric:
            whole = "a whole number" if self.whole else "a number"
            return f"{whole} from {self.low:g} to {self.high:g}"
        return "one of " + ", ".join(repr(v) for v in self.values)

    def healthier(self, answer: str | float | None) -> str | float | None:
        """The answer one step healthier than ``answer`` for a what-if, or None (unchangeable,
        Unknown, or already healthy).

        Numbers move to the nearest end of the healthy range; yes/no answers to the healthy one;
        ordered answers (general health) one step towards it, since "Poor" to "Excellent" is not
        a change anyone is promised.
        """
        if not self.changeable or answer is None or self.healthy is None:
            return None
        if self.is_numeric:
            low, high = self.healthy_range or (float(self.healthy), float(self.healthy))
            value = float(answer)
            return low if value < low else high if value > high else None
        if answer == self.healthy or answer not in self.values:
            return None
        if self.kind == "ordinal":
            here, target = self.values.index(str(answer)), self.values.index(str(self.healthy))
            return self.values[here + (1 if target > here else -1)]
        return self.healthy


FEATURES: tuple[Feature, ...] = (
    Feature(
        "bmi", "BMI", "number",
        "What is your body mass index (BMI)?",
        "Weight in kg divided by the square of height in metres, e.g. 70 kg at 1.75 m is 22.9.",
        low=10.0, high=100.0, unit="kg/m²",
        healthy=22.0, healthy_range=(18.5, 24.9), changeable=True,
    ),
    Feature(
        "smoking", "Smoking", "binary",
        "Have you smoked at least 100 cigarettes in your entire life?",
        "100 cigarettes are about 5 packs.", values=YES_NO, healthy="No", changeable=True,
    ),
    Feature(
        "alcohol_drinking", "AlcoholDrinking", "binary",
        "Are you a heavy drinker?",
        "Men: more than 14 drinks a week; women: more than 7 drinks a week.", values=YES_NO,
        healthy="No", changeable=True,
    ),
    Feature(
        "stroke", "Stroke", "binary",
        "Have you ever been told you had a stroke?", values=YES_NO, healthy="No",
    ),
    Feature(
        "physical_health", "PhysicalHealth", "number",
        "On how many of the last 30 days was your physical health not good?",
        "Include physical illness and injury. 0 if none.",
        low=0, high=30, whole=True, unit="days", healthy=0.0,
    ),
    Feature(
        "mental_health", "MentalHealth", "number",
        "On how many of the last 30 days was your mental health not good?",
        "Include stress, depression and problems with emotions. 0 if none.",
        low=0, high=30, whole=True, unit="days", healthy=0.0,
    ),
    Feature(
        "diff_walking", "DiffWalking", "binary",
        "Do you have serious difficulty walking or climbing stairs?", values=YES_NO, healthy="No",
    ),
    Feature("sex", "Sex", "category", "What is your sex?", values=("Female", "Male")),
    Feature(
        "age_category", "AgeCategory", "ordinal",
        "What is your age group?",
        values=(
            "18-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54",
            "55-59", "60-64", "65-69", "70-74", "75-79", "80 or older",
        ),
    ),
    Feature(
        "race", "Race", "category",
        "Which group best describes your race or ethnicity?",
        values=(
            "American Indian/Alaskan Native", "Asian", "Black", "Hispanic", "Other", "White",
        ),
    ),
    Feature(
        "diabetic", "Diabetic", "category",
        "Have you ever been told you had diabetes?",
        "Borderline diabetes is also called pre-diabetes.",
        values=("No", "No, borderline diabetes", "Yes", "Yes (during pregnancy)"), healthy="No",
    ),
    Feature(
        "physical_activity", "PhysicalActivity", "binary",
        "In the past 30 days, did you do any physical activity or exercise outside your regular job?",
        values=YES_NO, healthy="Yes", changeable=True,
    ),
    Feature(
        "gen_health", "GenHealth", "ordinal",
        "Would you say that in general your health is…",
        values=("Poor", "Fair", "Good", "Very good", "Excellent"), healthy="Excellent",
        changeable=True,
    ),
    Feature(
        "sleep_time", "SleepTime", "number",
        "On average, how many hours of sleep do you get in a 24-hour period?",
        low=1, high=24, unit="hours", healthy=7.0, healthy_range=(7.0, 8.0), changeable=True,
    ),
    Feature(
        "asthma", "Asthma", "binary",
        "Have you ever been told you had asthma?", values=YES_NO, healthy="No",
    ),
    Feature(
        "kidney_disease", "KidneyDisease", "binary",
        "Have you ever been told you had kidney disease?",
        "Not counting kidney stones, bladder infection or incontinence.", values=YES_NO,
        healthy="No",
    ),
    Feature(
        "skin_cancer", "SkinCancer", "binary",
        "Have you ever been told you had skin cancer?", values=YES_NO, healthy="No",
    ),
)

LABEL = Feature(
    "heart_disease", "HeartDisease", "binary",
    "Have you ever been diagnosed with coronary heart disease or a heart attack?",
    "Coronary heart disease (CHD) or myocardial infarction (MI).", values=YES_NO,
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.is_numeric)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.is_categorical)
#: Who a person is, shared by their healthy peer (the rest of the healthy profile is in the spec).
IDENTITY_FEATURES: tuple[str, ...] = ("sex", "age_category", "race")
BY_NAME: dict[str, Feature] = {f.name: f for f in (*FEATURES, LABEL)}
BY_COLUMN: dict[str, Feature] = {f.column: f for f in (*FEATURES, LABEL)}
KAGGLE_COLUMNS: tuple[str, ...] = (LABEL.column, *(f.column for f in FEATURES))


def feature(name: str) -> Feature:
    """Look a feature (or the label) up by its snake_case name, with a clear error for a typo."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}; known: {', '.join(BY_NAME)}") from None
