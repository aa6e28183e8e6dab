"""A person's result as HTML: the risk in context, readable on screen, in a screen reader and on paper.

One function renders a :class:`~heartrisk.web.risk_check.schemas.Prediction` (with its
:class:`~heartrisk.model.context.RiskContext`) for the form; the same HTML is what the print view
shows (the form's print stylesheet hides everything else), so the printed summary holds the answers,
the result, the picture, the peer comparison, the what-if, the range, the scope, the date and the
model version. Every sentence follows the scope (:data:`heartrisk.model.card.SCOPE`): "people who
answer like you ... reported", never "your risk of a future heart attack".

The 100 people picture is inline SVG (real page content, scalable, printable) with a text alternative;
numbers are also written out in words next to it.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from heartrisk.features import BY_NAME, FEATURES
from heartrisk.model.card import SCOPE
from heartrisk.model.context import RiskContext
from heartrisk.web.risk_check.schemas import Prediction

UNKNOWN = "Unknown"
#: Icon-array colours: reported heart disease, the range's extra, the rest (WCAG AA on white).
WITH = "#b03a2e"
MAYBE = "#e6a23c"
REST = "#d5d8dc"
#: The page's styles: the result on screen and phones (390 px), and the print view (the result alone).
RESULT_CSS = """
#risk-result h2 { font-size: 2.4rem; margin: 0.2rem 0; }
#risk-result h3 { font-size: 1.05rem; margin: 0.9rem 0 0.2rem; }
#risk-result table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
#risk-result th, #risk-result td { text-align: left; padding: 0.15rem 0.35rem;
                                   border-bottom: 1px solid #ddd; }
#risk-result caption { text-align: left; font-size: 0.85rem; }
#icon-array { margin: 0.6rem 0; }
#icon-array svg { max-width: 100%; height: auto; }
#icon-array .legend { list-style: none; padding: 0; margin: 0.3rem 0; font-size: 0.85rem; }
#icon-array .swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.3rem;
                      border-radius: 2px; vertical-align: middle; }
.note { font-size: 0.9rem; }
/* WCAG AA contrast (4.5:1, found by axe-core): Gradio's grey help text under each question (3.9:1),
   its orange primary button (3.6:1) and its footer (1.9:1) are darkened. */
.info-text { color: #4b5563 !important; }
#check { background: #c2410c !important; border-color: #c2410c !important; color: #fff !important; }
#check:hover { background: #9a3412 !important; }
.built-with { color: #4b5563 !important; }
.print-button { float: right; padding: 0.3rem 0.7rem; border: 1px solid #1a4f8b; border-radius: 4px;
                background: #fff; color: #1a4f8b; cursor: pointer; }
@media print {
  /* Gradio scopes rules inside @media to its container, so no `body` selector here. */
  #intro, #questions, #share, #factors, #imputed, #model-notice, .print-button { display: none !important; }
  * { visibility: hidden; }
  #risk-result, #risk-result *, #not-advice, #not-advice * { visibility: visible; }
  #risk-result { color: #000; }
  #risk-result details > summary { list-style: none; font-weight: 600; }
  #risk-result a { color: #000; }
  #risk-result section, #icon-array { break-inside: avoid; }
}
"""
RISK_AGE_CAVEAT = (
    "Risk age compares you with a healthy person of your sex; it says at what age such a person's "
    "risk is as high as yours. It is not the age of your heart, and it is only as good as the survey: "
    "few very young people report heart disease, so low risk ages are rough."
)
WHAT_IF_CAVEAT = (
    "These are differences between groups of survey respondents, not promises: people who were "
    "diagnosed may since have changed their habits (stopped smoking, say), which can even make a "
    "healthier answer look riskier."
)


def pct(p: float) -> str:
    return f"{p:.1%}"


def shown(value: Any) -> str:
    """An answer as a person reads it: ``27.5``, ``Yes``, ``Unknown``."""
    if value is None:
        return UNKNOWN
    return f"{value:g}" if isinstance(value, float) else str(value)


def short_name(feature_name: str) -> str:
    """``BMI``, ``Age category``: a question's name where the full question is too long."""
    feature = BY_NAME[feature_name]
    return feature.column if feature.column.isupper() else feature.name.replace("_", " ").capitalize()


def icon_array(context: RiskContext) -> str:
    """100 people in 10 rows: those who reported heart disease first, then the range's extra."""
    icons = context.icons
    sentence = (f"Of 100 people who answered like you, about {icons.with_disease} reported heart "
                f"disease (between {icons.low} and {icons.high}, given what is uncertain); "
                f"of 100 healthy peers, about {icons.healthy_peer}.")
    people = []
    for i in range(icons.people):
        colour = WITH if i < icons.with_disease else MAYBE if i < icons.high else REST
        x, y = 12 + 22 * (i % 10), 12 + 22 * (i // 10)
        people.append(f'<circle cx="{x}" cy="{y - 4}" r="4" fill="{colour}"/>'
                      f'<rect x="{x - 5}" y="{y + 1}" width="10" height="8" rx="3" fill="{colour}"/>')
    legend = (f'<ul class="legend"><li><span class="swatch" style="background:{WITH}"></span>'
              f'reported heart disease ({icons.with_disease})</li>'
              f'<li><span class="swatch" style="background:{MAYBE}"></span>'
              f'more, at the top of the range ({max(icons.high - icons.with_disease, 0)})</li>'
              f'<li><span class="swatch" style="background:{REST}"></span>did not</li></ul>')
    return (f'<figure id="icon-array" data-with="{icons.with_disease}" data-low="{icons.low}" '
            f'data-high="{icons.high}">'
            f'<svg viewBox="0 0 222 222" width="222" height="222" role="img" aria-labelledby="icons-title">'
            f'<title id="icons-title">{escape(sentence)}</title>{"".join(people)}</svg>'
            f'<figcaption>{escape(sentence)}</figcaption>{legend}</figure>')


def _peer_html(context: RiskContext) -> str:
    peer = context.healthy_peer
    who = ", ".join(escape(shown(peer.answers.get(n))) for n in ("sex", "age_category", "race")
                    if peer.answers.get(n) is not None)
    times = f"{peer.ratio:.1f}×" if peer.ratio != float("inf") else "far more than"
    return (f'<section id="healthy-peer" data-probability="{peer.probability:.6f}" '
            f'data-ratio="{peer.ratio:.6f}"><h3>Compared with a healthy peer</h3>'
            f'<p>Among healthy people like you ({who}: non-smoker, not a heavy drinker, active, '
            f'BMI in the healthy range, 7 hours of sleep, no bad days, no conditions, excellent '
            f'health), <strong>{pct(peer.probability)}</strong> reported heart disease. '
            f'Yours is <strong>{times}</strong> theirs.</p></section>')


def _percentile_html(context: RiskContext) -> str:
    found = context.percentile
    sex, age = found.group.split("|")
    group = " ".join(p for p in (
        {"Female": "women", "Male": "men"}.get(sex, "people"),
        f"aged {age}" if age != "*" else "of any age",
    ))
    return (f'<section id="peer-percentile" data-percentile="{found.percentile:.1f}">'
            f'<h3>Among people like you</h3><p>Your risk is higher than that of '
            f'<strong>{found.percentile:.0f} %</strong> of survey respondents who are {escape(group)}.'
            f'</p></section>')


def _risk_age_html(context: RiskContext) -> str:
    age = context.risk_age
    if age.capped == "younger":
        text = ("younger than the youngest group (18-24): your risk is below that of a healthy "
                "18-24-year-old, so the risk age is shown as 18-24")
    elif age.capped == "older":
        text = ("80 or older, the oldest group: your risk is above that of a healthy 80-year-old, "
                "so the risk age is capped there")
    else:
        text = f"about {age.years:.0f} (the {escape(age.age_group)} age group)"
    return (f'<section id="risk-age" data-years="{age.years:.1f}" data-capped="{age.capped or ""}">'
            f'<h3>Risk age</h3><p>Your risk age is <strong>{text}</strong>.</p>'
            f'<p class="note">{RISK_AGE_CAVEAT}</p></section>')


def _what_if_html(context: RiskContext) -> str:
    if not context.what_if:
        body = ("<p>You gave the healthy answer to every question you can change (or left it "
                "Unknown), so there is nothing to compare.</p>")
    else:
        rows = "".join(
            f'<tr data-feature="{w.feature}" data-probability="{w.probability:.6f}">'
            f'<th scope="row">{escape(short_name(w.feature))}</th>'
            f'<td>{escape(shown(w.answer))} → {escape(shown(w.healthier))}</td>'
            f'<td>{pct(w.probability)}</td>'
            f'<td>{"−" if w.difference >= 0 else "+"}{abs(w.difference) * 100:.1f} points</td></tr>'
            for w in context.what_if)
        body = ('<table><caption>People otherwise like you who answer one question differently'
                '</caption><thead><tr><th scope="col">Answer</th><th scope="col">Yours → healthier'
                '</th><th scope="col">Their risk</th><th scope="col">Difference</th></tr></thead>'
                f'<tbody>{rows}</tbody></table>')
    return (f'<section id="what-if"><h3>What if you answered differently?</h3>{body}'
            f'<p class="note">{WHAT_IF_CAVEAT}</p></section>')


def _range_html(context: RiskContext) -> str:
    found = context.range
    why = (f"you left {found.unknowns} question{'s' if found.unknowns != 1 else ''} Unknown "
           "(each was filled in many times with the answers people of your sex and age group give) "
           "and the model's calibration is itself uncertain" if found.unknowns
           else "the model's calibration is itself uncertain; answering every question kept it narrow")
    return (f'<section id="risk-range" data-low="{found.low:.6f}" data-high="{found.high:.6f}" '
            f'data-unknowns="{found.unknowns}"><h3>How sure is this?</h3>'
            f'<p>Likely between <strong>{pct(found.low)}</strong> and <strong>{pct(found.high)}'
            f'</strong> (5th to 95th percentile), because {why}.</p></section>')


def _answers_html(answers: dict[str, Any], imputed: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{escape(f.question)}</th><td>{escape(shown(answers.get(f.name)))}'
        + (f' (assumed {escape(shown(imputed[f.name]))})' if f.name in imputed else "")
        + "</td></tr>" for f in FEATURES)
    return (f'<details id="answers" open><summary>Your answers</summary><table>'
            f'<tbody>{rows}</tbody></table></details>')


def headline_html(result: Prediction) -> str:
    """The risk in percent, its band and what it is measured against (also without a context)."""
    band = ("About average" if result.risk_band == "average"
            else f"{result.risk_band.capitalize()} than average")
    ratio = result.probability / result.base_rate if result.base_rate else float("nan")
    return (f'<p>Among people who answer like you</p><h2>{pct(result.probability)}</h2>'
            f'<p>have been told they had coronary heart disease or a heart attack. '
            f'<strong>{band}</strong>: {ratio:.1f}× the survey population\'s {pct(result.base_rate)}.</p>')


def result_html(result: Prediction, answers: dict[str, Any], when: datetime) -> str:
    """The whole result (screen and print), see the module docstring."""
    # A plain button: Gradio's `js=` events are evaluated code, which the page's CSP forbids; an
    # inline handler is allowed ('unsafe-inline'), needs no server event, and is hidden on paper.
    parts = ['<div class="result">', '<button type="button" id="print" class="print-button" '
             'onclick="window.print()">Print / save as PDF</button>', headline_html(result)]
    context = result.context
    if context is not None:
        parts += [icon_array(context), _range_html(context), _peer_html(context),
                  _percentile_html(context), _risk_age_html(context), _what_if_html(context)]
    else:
        parts.append('<p class="note">This model version was trained before the comparisons below '
                     'were stored with it; they appear once a newer model is in use.</p>')
    parts += [
        _answers_html(answers, result.imputed),
        f'<p class="note" id="scope">{escape(SCOPE)}</p>',
        f'<p class="note" id="stamp">Checked on {when:%d %B %Y, %H:%M} UTC with model version '
        f'{escape(result.model_version)}. The model flags {pct(result.threshold)} or more as high'
        f'{" (yours is)" if result.prediction else ""}. '
        f'<a href="/model">How the model was made and how well it works</a>.</p>',
        "</div>",
    ]
    return "".join(parts)
