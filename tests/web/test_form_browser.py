"""The risk-check form in a real browser (Chromium through Playwright) on the real server.

A person answers 14 questions and leaves three Unknown, reads their risk (the same the API gives),
the chart and the assumed answers, is stopped by the field for a bad answer and for missing consent,
then shares their outcome, which lands in heart_user as answered. `make docs-images` keeps the
screenshot for the README (docs/img/form.png); `make test` does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from heartrisk.config import Settings
from heartrisk.features import FEATURES
from heartrisk.monitoring.served_profile import RISK, read_profile
from heartrisk.web.risk_check.form import short_name
from heartrisk.web.server import BackgroundServer
from support.web import (
    ANSWERS,
    CHROMIUM_ARGS,
    UNKNOWNS,
    answer,
    chromium,
    keep_docs_image,
    stored_submissions,
)

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture
def page(web_server: BackgroundServer) -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport=VIEWPORT)
        tab.set_default_timeout(30_000)
        tab.goto(web_server.url + "/")
        tab.wait_for_selector("#check")
        yield tab
        browser.close()


def test_risk_check_and_consented_sharing(page: Any, web_server: BackgroundServer, web_home: Settings,
                                          tmp_path: Path) -> None:
    profile = web_server.app.state.profile

    def counted() -> int:
        profile.flush()
        rows = read_profile(web_home)
        return int(rows.loc[rows["question"] == RISK, "count"].sum()) if not rows.empty else 0

    served_before = counted()
    # A bad answer is named by its field, and nothing is computed.
    answer(page, "bmi", 0)
    page.locator("#q-bmi").get_by_role("textbox").fill("abc")
    page.locator("#check").click()
    page.locator("#q-bmi").get_by_text("'abc' is not a number").wait_for()
    assert "Your result appears here" in page.locator("#risk-result").inner_text()

    for name, value in ANSWERS.items():
        if value is not None:
            answer(page, name, value)
    page.locator("#check").click()
    page.wait_for_selector("#risk-result h2")
    shown = page.locator("#risk-result h2").inner_text()

    expected = httpx.post(web_server.url + "/api/v1/predict", json=ANSWERS).json()
    assert shown == f"{expected['probability']:.1%}"
    assert counted() == served_before + 2  # the form's answer and the API's, not the refused one
    text = page.locator("#risk-result").inner_text()
    band = expected["risk_band"]
    assert ("About average" if band == "average" else f"{band.capitalize()} than average") in text
    page.locator("#factors img").wait_for()  # the chart of what raised and lowered the risk
    assumed = page.locator("#imputed").inner_text()
    for name in UNKNOWNS:
        assert short_name(name) in assumed
    assert "not medical advice" in page.locator("#not-advice").inner_text()

    # Sharing needs a diagnosis and the consent tick; without them nothing is stored.
    before = len(stored_submissions(web_home))
    page.locator("#share-button").click()
    page.locator("#diagnosis").get_by_text("Choose Yes or No").wait_for()
    page.locator("#consent").get_by_text("Tick the box").wait_for()
    assert len(stored_submissions(web_home)) == before

    page.locator("#diagnosis").get_by_label("Yes", exact=True).check()
    page.locator("#consent").get_by_role("checkbox").check()
    page.locator("#share-button").click()
    page.locator("#thanks").get_by_text("Thank you").wait_for()
    submission_id = re.search(r"[0-9a-f-]{36}", page.locator("#thanks").inner_text()).group(0)

    stored = stored_submissions(web_home)
    assert len(stored) == before + 1
    row = stored.set_index("submission_id").loc[submission_id]
    for f in FEATURES:
        expected_value = ANSWERS[f.name]
        if expected_value is None:
            assert pd.isna(row[f.name]), f.name
        else:
            assert row[f.name] == expected_value, f.name
    assert bool(row["heart_disease"]) is True

    page.locator("#risk-result").scroll_into_view_if_needed()
    shot = tmp_path / "form.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    keep_docs_image(shot, "form.png")


def test_page_says_when_there_is_no_model(settings: Settings) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with BackgroundServer(settings) as web_server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport=VIEWPORT)
        tab.goto(web_server.url + "/")
        tab.locator("#model-notice").get_by_text("not available yet").wait_for(timeout=30_000)
        assert "heartrisk train" in tab.locator("#model-notice").inner_text()
        tab.locator("#check").click()
        tab.locator("#risk-result").get_by_text("No model is available yet").wait_for(timeout=30_000)
        browser.close()
