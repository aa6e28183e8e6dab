"""Access under the real browser: a risk check and the dashboard's plots run under the content
security policy with no violation (the headers, lockout and error tests are in tests/web/test_guard.py)."""

from __future__ import annotations

import pytest

from heartrisk.config import Settings
from heartrisk.web.guard import auth
from heartrisk.web.server import BackgroundServer
from support.reliability import PASSWORD
from support.web import CHROMIUM_ARGS, chromium, copy_home

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def home(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return copy_home(trained_home, tmp_path_factory.mktemp("access") / "home")


@pytest.mark.browser
def test_the_policy_lets_the_form_and_dashboard_work(home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headless Chromium: a risk check and the dashboard's plots run under the CSP, no violation."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    watch = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
    with BackgroundServer(home) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.add_init_script(watch)
        page.goto(server.url + "/")
        page.locator("#check").click()
        page.locator("#risk-result", has_text="%").wait_for(timeout=60_000)  # (no eval: the CSP forbids it)
        form_violations = page.evaluate("window.__csp")
        page.goto(server.url + "/monitor")
        page.fill("input[type=password]", PASSWORD)
        page.locator("button[type=submit]").click()
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        dashboard_violations = page.evaluate("window.__csp")
        browser.close()
    assert form_violations == [] and dashboard_violations == []
