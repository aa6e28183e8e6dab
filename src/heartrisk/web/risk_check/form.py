"""The risk check a person uses: a Gradio 6 Blocks form built from the feature spec.

Every question, its help text and its allowed answers come from :data:`heartrisk.features.FEATURES`;
each can be left Unknown (an empty number, or the "Unknown" choice). Answers are checked by the spec
before anything runs, and a problem is shown by the field it belongs to (Gradio's event validators).
The result shows the risk, its band against the population, a chart of the answers that raised or
lowered it and what was assumed for the Unknowns. Sharing an outcome is a separate step that needs
a diagnosis and explicit consent; it stores the answers and the diagnosis, nothing else.

The form's events are private to the page (no Gradio client API, no flagging, no run history kept in
the browser): programs use the JSON API under ``/api/v1``. Gradio's validators run only on the queue
path, and Gradio has routes that run an event without them (web/guard/gradio_routes.py closes those), so the
event functions check everything again themselves: the answers, and for a share the diagnosis
("Yes" or "No", never turned into "No") and the consent (the tick box's ``True``, nothing else). A
share also takes a slot of the client's submission budget (web/guard/rate_limits.py), the same budget the
API's submissions take, whichever URL reached it.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import BY_NAME, FEATURES, LABEL, Feature
from heartrisk.validation import ValidationError, coerce
from heartrisk.web.guard.rate_limits import SubmissionLimit, too_many_detail
from heartrisk.web.risk_check.model_cache import ModelCache, ModelUnavailableError
from heartrisk.web.risk_check.risk import score
from heartrisk.web.risk_check.schemas import Prediction
from heartrisk.web.risk_check.submission_writer import SubmissionWriter, WriterStoppedError

log = logging.getLogger(__name__)

UNKNOWN = "Unknown"
#: Choices shown as radio buttons up to this many, as a dropdown beyond.
RADIO_MAX_CHOICES = 6
#: Factors drawn in the chart (the largest effects; the rest move the risk very little).
CHART_FACTORS = 10

TITLE = "Heart-disease risk check"
INTRO = (
    "# Heart-disease risk check\n"
    "Answer the 17 questions of the CDC's 2020 health survey (BRFSS) and see your estimated risk of "
    "coronary heart disease or a heart attack, compared with the survey's population, and which "
    "answers raised or lowered it. **Unknown is always fine**: leave a number empty or choose "
    "*Unknown*, and the model uses a typical answer instead (it shows you which)."
)
NOT_ADVICE = (
    "**This is not medical advice.** It is a statistical estimate from survey answers, not a diagnosis. "
    "If you have symptoms such as chest pain or shortness of breath, or are worried about your heart, "
    "talk to a doctor. In an emergency call your local emergency number."
)
def consent_text(settings: Settings) -> str:
    """The consent a person gives by ticking the box: derived from the settings' consent scope, the
    one place that decides what shared answers are used for (``Settings.synth_submissions_from``:
    unset, they check and train the risk model only; set, they also train the synthetic-data
    generator, and this text says so)."""
    use = "used to check and improve this model"
    if settings.synth_submissions_from is not None:
        use += (", and to train the generator of made-up (synthetic) survey records that the model also "
                "learns from (a generator is used only if tests show its records do not reveal who took "
                "part)")
    return ("I agree that my answers above and my diagnosis are stored anonymously (no name, address, IP "
            f"address or other identifier) and {use}.")
SHARE_INTRO = (
    "## Share my outcome (optional)\n"
    "If you know whether you have been diagnosed with heart disease, sharing it with your answers helps "
    "check how well the model works for people like you. Nothing is stored unless you tick the box."
)
CSS = """
#risk-result h2 { font-size: 2.4rem; margin: 0.2rem 0; }
.note { font-size: 0.9rem; }
"""


# ------------------------------------------------------------------------------------ inputs
def answer_input(feature: Feature) -> gr.components.Component:
    """One question: a number box (empty = Unknown) or its answers plus "Unknown"."""
    info = " ".join(p for p in (feature.help, f"Accepts {feature.describe_allowed()}"
                                + (f" ({feature.unit})" if feature.unit else "") + ".") if p)
    if feature.is_numeric:
        # A text box, not gr.Number: Gradio 6's number box shows 0 when empty, and 0 is an answer.
        return gr.Textbox(label=feature.question, info=info + " Leave empty if unknown.", value="",
                          placeholder=UNKNOWN, max_lines=1, elem_id=f"q-{feature.name}")
    choices = [*feature.values, UNKNOWN]
    factory = gr.Radio if len(choices) <= RADIO_MAX_CHOICES + 1 else gr.Dropdown
    return factory(choices=choices, value=UNKNOWN, label=feature.question, info=feature.help or None,
                   elem_id=f"q-{feature.name}")


def parse_answers(values: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """Form values -> (feature answers with None = Unknown, feature -> problem).

    The spec's own check (:func:`heartrisk.validation.coerce`, the one the CSV loader and the store
    use) reads the number boxes' text, so the form says exactly what a file or the store would.
    """
    raw = {f.name: None if v is None or v == UNKNOWN else v for f, v in zip(FEATURES, values, strict=True)}
    checked = coerce(pd.DataFrame([raw], dtype=object), label="absent")
    problems = {p.column: f"{p.value!r} {p.reason}" for p in checked.problems}
    row = checked.frame.iloc[0]
    answers = {f.name: None if pd.isna(row[f.name]) else (float(row[f.name]) if f.is_numeric
                                                           else str(row[f.name]))
               for f in FEATURES}
    return answers, problems


def checked_answers(values: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`parse_answers`, with values of the wrong count or kind reported instead of raised."""
    if len(values) != len(FEATURES):
        return {}, {"form": f"{len(values)} answers instead of {len(FEATURES)}"}
    try:
        return parse_answers(values)
    except (TypeError, ValueError):
        return {}, {"form": "an answer of the wrong kind"}


def share_problem(answers: tuple[Any, ...], diagnosis: Any, consent: Any) -> str | None:
    """Why a share must not be stored, or None: the checks of :func:`validate_share`, made again by
    the share function itself (whatever route reached it)."""
    if consent is not True:
        return "the box agreeing to store your answers was not ticked."
    if not isinstance(diagnosis, str) or diagnosis not in LABEL.values:
        return "choose Yes or No: the diagnosis is what is being shared."
    _, problems = checked_answers(answers)
    if problems:
        return "check the answers marked above (" + ", ".join(_field_names(problems)) + ")."
    return None


def _field_names(problems: dict[str, str]) -> list[str]:
    return [short_name(name) if name in BY_NAME else name for name in problems]


def validate_answers(*values: Any) -> list[dict[str, Any]]:
    """Gradio validator: one verdict per question, shown by the field."""
    _, problems = parse_answers(values)
    return [gr.validate(f.name not in problems, problems.get(f.name, "")) for f in FEATURES]


def validate_share(*values: Any) -> list[dict[str, Any]]:
    """Validator of the share step: the answers, a diagnosis and the consent tick."""
    *answers, diagnosis, consent = values
    verdicts = validate_answers(*answers)
    verdicts.append(gr.validate(diagnosis in LABEL.values,
                                "Choose Yes or No: the diagnosis is what is being shared."))
    verdicts.append(gr.validate(consent is True, "Tick the box to agree, or nothing is stored."))
    return verdicts


# ------------------------------------------------------------------------------------ result
def risk_markdown(result: Prediction) -> str:
    """The headline: risk in percent, its band and what that band is measured against."""
    band = ("About average" if result.risk_band == "average"
            else f"{result.risk_band.capitalize()} than average")
    ratio = result.probability / result.base_rate if result.base_rate else float("nan")
    flagged = " (yours is)" if result.prediction else ""
    return (
        f"Your estimated risk\n## {result.probability:.1%}\n"
        f"**{band}**: {ratio:.1f}× the survey population's {result.base_rate:.1%}.\n\n"
        f"<span class='note'>Model version {result.model_version}. The model flags a risk of "
        f"{result.threshold:.1%} or more as high{flagged}.</span>"
    )


def shown(value: Any) -> str:
    """An answer as a person reads it: ``27.5``, ``Yes``, ``Unknown``."""
    if value is None:
        return UNKNOWN
    return f"{value:g}" if isinstance(value, float) else str(value)


def short_name(feature_name: str) -> str:
    """``BMI``, ``Age category``: a question's name where the full question is too long."""
    feature = BY_NAME[feature_name]
    return feature.column if feature.column.isupper() else feature.name.replace("_", " ").capitalize()


def factor_label(feature_name: str, answer: Any, imputed: dict[str, Any]) -> str:
    """Chart label: ``BMI: 31``, or ``Age category: Unknown → 60-64`` for an assumed answer."""
    if answer is None and feature_name in imputed:
        return f"{short_name(feature_name)}: {UNKNOWN} → {shown(imputed[feature_name])}"
    return f"{short_name(feature_name)}: {shown(answer)}"


def factor_chart(result: Prediction) -> Any:
    """Horizontal bars: answers that raised the risk to the right (red), lowered it to the left."""
    from matplotlib.figure import Figure

    factors = [f for f in (result.factors or [])[:CHART_FACTORS] if abs(f.contribution) > 1e-4]
    factors.reverse()  # largest on top
    figure = Figure(figsize=(6.4, 0.42 * max(len(factors), 3) + 1.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    labels = [factor_label(f.feature, f.answer, result.imputed) for f in factors]
    values = [f.contribution for f in factors]
    colors = ["#c0392b" if v > 0 else "#2e86c1" for v in values]
    axes.barh(labels, values, color=colors)
    axes.axvline(0, color="#444", linewidth=0.8)
    axes.set_xlabel("← lowers risk        effect on risk (log-odds)        raises risk →")
    axes.set_title("What moved your risk", fontsize=11, loc="left")
    axes.tick_params(axis="y", labelsize=9)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure


def imputed_markdown(result: Prediction) -> str:
    if not result.imputed:
        return "You answered every question; nothing was assumed."
    assumed = ", ".join(f"{short_name(name)} **{shown(value)}**" for name, value in result.imputed.items())
    return ("**Assumed for your Unknown answers** (the median or most common answer in the survey): "
            + assumed + ".")


# ------------------------------------------------------------------------------------ the page
def build_form(settings: Settings, models: ModelCache, submissions: SubmissionWriter,
               limit: SubmissionLimit | None = None) -> gr.Blocks:
    """The Blocks app (not yet mounted); :func:`heartrisk.web.app.create_app` mounts it at ``/``.

    Shared outcomes go through the app's submission writer, as the API's do (one commit per batch),
    within the app's submission ``limit`` (none: a form built alone, as in a test)."""

    def check_risk(*values: Any) -> tuple[Any, Any, Any]:
        answers, problems = checked_answers(values)
        if problems:  # the validator shows each by its field; nothing is scored as Unknown instead
            return ("**Please check your answers** (" + ", ".join(_field_names(problems)) + ").",
                    None, "")
        try:
            scorer = models.get()
        except ModelUnavailableError as exc:
            return f"**No model is available yet.** {exc}", None, ""
        result = score(scorer, [answers])[0]
        return risk_markdown(result), factor_chart(result), imputed_markdown(result)

    def share_outcome(request: gr.Request, *values: Any) -> str:
        if len(values) != len(FEATURES) + 2:
            return "**Nothing was stored**: the form was incomplete; reload the page."
        *answers, diagnosis, consent = values
        problem = share_problem(tuple(answers), diagnosis, consent)
        if problem is not None:
            return f"**Nothing was stored**: {problem}"
        address = getattr(getattr(request, "client", None), "host", None)
        wait = limit.take(address) if limit is not None else 0.0
        if wait:
            return f"**Nothing was stored**: {too_many_detail('shares', wait)}."
        try:  # waits for the commit that holds it: thanked only once it is stored
            submission_id = submissions.add(parse_answers(tuple(answers))[0], diagnosis == "Yes")
        except BaseException as exc:
            if limit is not None:  # nothing was stored: the slot goes back
                limit.give_back(address)
            if isinstance(exc, WriterStoppedError):
                return "**Nothing was stored**: the server is restarting. Please share again in a minute."
            if isinstance(exc, ValidationError):  # its message quotes the answers: not logged, not shown
                return "**Nothing was stored**: an answer could not be stored; check the answers above."
            raise
        return (f"**Thank you.** Your answers and diagnosis were stored anonymously "
                f"(reference `{submission_id}`).")

    def model_notice() -> Any:
        reason = models.reason
        if reason is None:
            return gr.update(visible=False, value="")
        return gr.update(visible=True, value=f"⚠️ **The risk check is not available yet.** {reason}")

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        notice = gr.Markdown(visible=False, elem_id="model-notice")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                inputs = []
                for start in range(0, len(FEATURES), 2):
                    with gr.Row():
                        inputs.extend(answer_input(f) for f in FEATURES[start:start + 2])
                check = gr.Button("Check my risk", variant="primary", elem_id="check")
            with gr.Column(scale=2):
                risk = gr.Markdown("Your result appears here.", elem_id="risk-result")
                chart = gr.Plot(label="What moved your risk", show_label=False, format="png",
                                elem_id="factors")
                imputed = gr.Markdown(elem_id="imputed")
                gr.Markdown(NOT_ADVICE, elem_id="not-advice")
        with gr.Group(elem_id="share"):
            gr.Markdown(SHARE_INTRO)
            diagnosis = gr.Radio(choices=list(LABEL.values), value=None, label=LABEL.question,
                                 info=LABEL.help, elem_id="diagnosis")
            consent = gr.Checkbox(value=False, label=consent_text(settings), elem_id="consent")
            share = gr.Button("Share my answers and diagnosis", elem_id="share-button")
            thanks = gr.Markdown(elem_id="thanks")

        check.click(check_risk, inputs=inputs, outputs=[risk, chart, imputed],
                    validator=validate_answers, api_visibility="private", concurrency_id="predict")
        share.click(share_outcome, inputs=[*inputs, diagnosis, consent], outputs=thanks,
                    validator=validate_share, api_visibility="private", concurrency_id="share")
        demo.load(model_notice, outputs=notice, api_visibility="private")
    return demo
