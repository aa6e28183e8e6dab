"""The public model card at ``/model``: what the champion is for and how well it does for whom.

It renders what the champion version carries (:attr:`heartrisk.model.registry.LoadedModel.card`,
computed at training time on the real test records, :mod:`heartrisk.model.card`): intended use, the
label's meaning, the data and its version, metrics overall and by sex, age group and race, a
calibration plot (inline SVG), the measured coverage of the uncertainty range, known limitations, the
version and when it was trained. Plain server-rendered HTML: no script, readable without Gradio.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from heartrisk.features import BY_NAME
from heartrisk.model.card import SCOPE
from heartrisk.web.risk_check.model_cache import ModelCache, ModelUnavailableError
from heartrisk.web.risk_check.result_page import short_name

router = APIRouter(tags=["model card"])

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 0 auto; padding: 1rem;
       color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.2rem; width: 100%; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
.wrap { overflow-x: auto; }
a { color: #1a4f8b; }
"""


def _number(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _scrollable(label: str) -> str:
    """A table's wrapper scrolls sideways on a phone: keyboard users must reach it (axe-core)."""
    return f'tabindex="0" role="region" aria-label="{escape(label)}"'


def _metrics_table(title: str, rows: list[dict[str, Any]], table_id: str) -> str:
    body = "".join(
        f'<tr><th scope="row">{escape(str(r["group"]))}</th><td>{r["records"]:,}</td>'
        f'<td>{r["with_disease"]:,}</td><td>{_number(r["roc_auc"])}</td><td>{_number(r["pr_auc"])}</td>'
        f'<td>{_number(r["observed_rate"], True)}</td><td>{_number(r["predicted_rate"], True)}</td></tr>'
        for r in rows)
    return (f'<div class="wrap" {_scrollable(title)}><table id="{table_id}"><caption>{escape(title)}'
            '</caption><thead><tr><th scope="col">Group</th><th scope="col">Records</th>'
            '<th scope="col">With heart disease</th><th scope="col">ROC-AUC</th>'
            '<th scope="col">PR-AUC</th><th scope="col">Observed rate</th>'
            '<th scope="col">Mean predicted</th></tr></thead>'
            f'<tbody>{body}</tbody></table></div>')


def calibration_svg(calibration: dict[str, list[float]]) -> str:
    """Observed rate against mean predicted risk per decile, with the diagonal of perfect calibration."""
    predicted, observed = calibration["mean_predicted"], calibration["observed"]
    top = max([*predicted, *observed, 0.05]) * 1.05
    size, pad = 300, 40

    def x(v: float) -> float:
        return pad + (size - 2 * pad) * v / top

    def y(v: float) -> float:
        return size - pad - (size - 2 * pad) * v / top

    dots = "".join(f'<circle cx="{x(p):.1f}" cy="{y(o):.1f}" r="4" fill="#1a4f8b"/>'
                   for p, o in zip(predicted, observed, strict=True))
    line = " ".join(f"{x(p):.1f},{y(o):.1f}" for p, o in zip(predicted, observed, strict=True))
    ticks = "".join(
        f'<text x="{x(t):.1f}" y="{size - pad + 16}" font-size="10" text-anchor="middle">{t:.0%}</text>'
        f'<text x="{pad - 6}" y="{y(t) + 3:.1f}" font-size="10" text-anchor="end">{t:.0%}</text>'
        for t in (0, top / 2, top))
    summary = "; ".join(f"predicted {p:.1%}, observed {o:.1%}" for p, o in zip(predicted, observed,
                                                                                strict=True))
    return (f'<svg id="calibration" viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
            f'role="img" aria-labelledby="calibration-title"><title id="calibration-title">'
            f'Calibration by decile of predicted risk: {summary}</title>'
            f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(top):.1f}" y2="{y(top):.1f}" stroke="#888" '
            f'stroke-dasharray="4 3"/><line x1="{x(0)}" y1="{y(0)}" x2="{x(top):.1f}" y2="{y(0)}" '
            f'stroke="#333"/><line x1="{x(0)}" y1="{y(0)}" x2="{x(0)}" y2="{y(top):.1f}" stroke="#333"/>'
            f'<polyline points="{line}" fill="none" stroke="#1a4f8b"/>{dots}{ticks}'
            f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">mean predicted'
            f'</text><text x="12" y="{size / 2}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 12 {size / 2})">observed</text></svg>')


def _coverage_table(rows: list[dict[str, Any]]) -> str:
    body = "".join(f'<tr><th scope="row">{r["unknowns"]}</th><td>{r["records"]}</td>'
                   f'<td>{r["coverage"]:.1%}</td><td>{r["mean_width"] * 100:.1f} points</td></tr>'
                   for r in rows)
    return (f'<div class="wrap" {_scrollable("uncertainty range coverage")}><table id="range-coverage">'
            '<caption>The uncertainty range, measured: answers blanked at random in test records; '
            'how often the risk with the true answers lies in the 5th-95th percentile range</caption>'
            '<thead><tr><th scope="col">Unknown answers</th><th scope="col">Records</th>'
            '<th scope="col">Inside the range</th><th scope="col">'
            f'Mean width</th></tr></thead><tbody>{body}</tbody></table></div>')


def card_html(version: str, trained_at: str, family: str, card: dict[str, Any] | None) -> str:
    """The page for one version (``card`` None: a version trained before cards were stored)."""
    head = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width, initial-scale=1"><title>heartrisk model card</title>'
            f'<style>{STYLE}</style></head><body><main><h1>Model card</h1>'
            f'<p>Model version <strong id="model-version">{escape(version)}</strong> ({escape(family)}), '
            f'trained {escape(trained_at)}. <a href="/">Back to the risk check</a>.</p>'
            f'<p>{escape(SCOPE)}</p>')
    if card is None:
        return (head + "<p>This version was trained before model cards were stored; train a new "
                "version (<code>heartrisk train</code>) to see its subgroup metrics here.</p>"
                "</main></body></html>")
    data, overall = card["data"], card["overall"]
    subgroups = "".join(_metrics_table(f"By {short_name(name).lower()}", rows, f"by-{name}")
                        for name, rows in card["subgroups"].items() if name in BY_NAME)
    limitations = "".join(f"<li>{escape(text)}</li>" for text in card["limitations"])
    return (
        head
        + f'<h2>Intended use</h2><p>{escape(card["intended_use"])}</p>'
        + f'<h2>What the number means</h2><p>{escape(card["label"])}</p>'
        + '<h2>Data</h2><p>Feature group <code>' + escape(str(data["feature_group"]))
        + f'</code> version {data["feature_group_version"]}: {data["training_records"]:,} real training '
        + f'records; metrics on {data["test_records"]:,} real test records held out from training '
        + f'({data["test_positive_rate"]:.1%} with heart disease).</p>'
        + '<h2>How well it works</h2>'
        + _metrics_table("Overall", [{"group": "everyone", **overall}], "overall")
        + subgroups
        + '<h2>Calibration</h2><p>Each dot is a tenth of the test records, by predicted risk: on the '
          'dashed line the predicted and the observed share agree.</p>'
        + calibration_svg(card["calibration"])
        + '<h2>Uncertainty range</h2>' + _coverage_table(card["range_coverage"])
        + f'<h2>Known limitations</h2><ul>{limitations}</ul></main></body></html>'
    )


@router.get("/model", response_class=HTMLResponse, summary="The model card of the model in use",
            include_in_schema=False)
async def model_card(request: Request) -> HTMLResponse:
    cache: ModelCache = request.app.state.models
    try:
        loaded = cache.get().loaded
    except ModelUnavailableError as exc:
        return HTMLResponse(card_html("none", "never", "no model", None).replace(
            "This version was trained before model cards were stored; train a new version "
            "(<code>heartrisk train</code>) to see its subgroup metrics here.",
            f"No model is available yet: {escape(str(exc))}"), status_code=503)
    return HTMLResponse(card_html(loaded.version, f"{loaded.trained_at:%d %B %Y, %H:%M} UTC",
                                  loaded.family, loaded.card))
