"""The result in context (issue 17) in a real browser on a phone-sized screen, printed, and checked
for accessibility.

A person on a 390 px wide screen leaves three answers Unknown and sees, on one page, the range, the
100 people picture, the healthy peer, the percentile, the risk age and the what-if; each is read off
the page and checked against the JSON API. The page is printed to PDF by Chromium and the PDF read
back. axe-core (npm, pinned in tests/web/axe) finds no serious or critical violation on the form with
its result and on the model card. Screenshots stay in the test's temporary folder; `make docs-images`
copies them to docs/img (result.png, model-card.png): `make test` never writes tracked files.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from heartrisk.web.server import BackgroundServer
from support.web import ANSWERS, CHROMIUM_ARGS, UNKNOWNS, answer, chromium, keep_docs_image

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}


def pct(p: float) -> str:
    return f"{p:.1%}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def result_page(browser: Any, web_server: BackgroundServer) -> Iterator[Any]:
    """The form on a phone, answered with three Unknowns, its result shown."""
    tab = browser.new_page(viewport=PHONE)
    tab.set_default_timeout(30_000)
    tab.goto(web_server.url + "/")
    tab.wait_for_selector("#check")
    for name, value in ANSWERS.items():
        if value is not None:
            answer(tab, name, value)
    tab.locator("#check").click()
    tab.wait_for_selector("#icon-array")
    yield tab
    tab.close()


def test_the_result_in_context_matches_the_api(result_page: Any, web_server: BackgroundServer,
                                               tmp_path: Path) -> None:
    page = result_page
    expected = httpx.post(web_server.url + "/api/v1/predict", json=ANSWERS, timeout=30).json()
    context = expected["context"]
    assert context["range"]["unknowns"] == len(UNKNOWNS) == 3
    assert page.locator("#risk-result h2").inner_text() == pct(expected["probability"])

    # the 100 people picture: drawn (100 people, N coloured), with the same N in words
    icons = context["icons"]
    figure = page.locator("#icon-array")
    assert figure.locator("svg circle").count() == 100
    assert figure.locator(f'svg circle[fill="{_with_colour()}"]').count() == icons["with_disease"]
    caption = figure.locator("figcaption").inner_text()
    assert f"about {icons['with_disease']} reported heart disease" in caption
    assert f"between {icons['low']} and {icons['high']}" in caption
    assert figure.locator("svg title").text_content() == caption  # the text alternative

    span = page.locator("#risk-range").inner_text()
    assert pct(context["range"]["low"]) in span and pct(context["range"]["high"]) in span
    assert "3 questions Unknown" in span
    peer = page.locator("#healthy-peer").inner_text()
    assert pct(context["healthy_peer"]["probability"]) in peer
    assert f"{context['healthy_peer']['ratio']:.1f}×" in peer
    assert f"{context['percentile']['percentile']:.0f} %" in page.locator("#peer-percentile").inner_text()
    assert "men aged 65-69" in page.locator("#peer-percentile").inner_text()
    risk_age = page.locator("#risk-age")
    assert float(risk_age.get_attribute("data-years")) == pytest.approx(context["risk_age"]["years"])
    assert "not the age of your heart" in risk_age.inner_text()

    shown = page.locator("#what-if tbody tr")
    assert shown.count() == len(context["what_if"]) > 0
    for i, entry in enumerate(context["what_if"]):
        row = shown.nth(i)
        assert row.get_attribute("data-feature") == entry["feature"]
        assert pct(entry["probability"]) in row.inner_text()
    assert "not promises" in page.locator("#what-if").inner_text()
    assert "not your chance of a heart attack in the next 10 years" in page.locator("#scope").inner_text()
    assert f"model version {expected['model_version']}" in page.locator("#stamp").inner_text()

    # a phone: nothing wider than the screen
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    shot = tmp_path / "result-390px.png"
    page.locator("#risk-result").screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    keep_docs_image(shot, "result.png")


def _with_colour() -> str:
    from heartrisk.web.risk_check.result_page import WITH

    return WITH


def test_the_summary_prints_to_pdf(result_page: Any, tmp_path: Path) -> None:
    from pypdf import PdfReader

    pdf = tmp_path / "summary.pdf"
    result_page.pdf(path=str(pdf), format="A4", print_background=True)
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    # PDF text comes with ligatures (ﬀ) and words split at will: compare NFKC text without spaces
    text = "".join(unicodedata.normalize("NFKC", text).split())
    for expected in ("Among people who answer like you", "Of 100 people who answered like you",
                     "Compared with a healthy peer", "Risk age", "What if you answered differently",
                     "How sure is this", "Your answers", "What is your age group?", "65-69",
                     "not your chance of a heart attack", "model version"):
        assert "".join(expected.split()) in text, expected
    # the print view is the result alone: the questions' help and the share step are not printed
    assert "Sharemyoutcome" not in text and "Leaveemptyifunknown" not in text
    print(f"PDF: {pdf}")


def run_axe(page: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `make install` runs npm ci in tests/web/axe")
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}
    })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                              nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_form_and_result_have_no_serious_accessibility_violation(result_page: Any) -> None:
    assert run_axe(result_page) == []


def test_model_card_shows_subgroups_and_is_accessible(browser: Any, web_server: BackgroundServer,
                                                      tmp_path: Path) -> None:
    tab = browser.new_page(viewport=PHONE)
    tab.goto(web_server.url + "/model")
    model = httpx.get(web_server.url + "/api/v1/model", timeout=30).json()
    assert tab.locator("#model-version").inner_text() == model["version"]
    for table in ("#by-sex", "#by-age_category", "#by-race", "#overall", "#range-coverage"):
        assert tab.locator(f"{table} tbody tr").count() >= 1, table
    assert tab.locator("#by-sex tbody tr").count() == 2
    assert tab.locator("#calibration circle").count() >= 5
    assert "not a 10-year risk" in tab.inner_text("main")
    assert run_axe(tab) == []
    shot = tmp_path / "model-card-390px.png"
    tab.screenshot(path=str(shot), full_page=True)
    keep_docs_image(shot, "model-card.png")
    tab.close()
