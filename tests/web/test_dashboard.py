"""The monitoring dashboard and its API, on the real app: the password, the numbers, a real browser."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from heartrisk.config import Settings
from heartrisk.jobs.infer import run_infer
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
from heartrisk.web.app import create_app
from heartrisk.web.dashboard.routes import mount_monitor
from heartrisk.web.guard.auth import PASSWORD_ENV, OperatorAuth, operator_password, password_path

PASSWORD = "correct horse battery staple"
API = ("summary", "model", "performance", "confusion", "drift", "volume", "recent", "shap",
       "synthesizer")
REPO = Path(__file__).resolve().parents[2]


def add_rows(settings: Settings, n: int, source: str, at: datetime, seed: int,
             bmi_shift: float = 0.0) -> None:
    heart = open_group(settings, HEART)
    rows = heart.read(sources=["kaggle"]).sample(n=n, random_state=seed).reset_index(drop=True)
    rows["record_id"] = [f"{source}:dash:{seed}:{i}" for i in range(n)]
    rows["source"] = source
    rows["event_time"] = pd.Timestamp(at)
    rows["bmi"] = (rows["bmi"] + bmi_shift).clip(upper=99)
    heart.insert(rows)


@pytest.fixture(scope="module")
def monitored(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A trained home after four daily runs: the Kaggle backfill, then synthetic and user rows each
    day, the last day's synthetic rows more numerous and heavier (BMI + 4), as if the synthesizer
    had drifted."""
    settings = Settings(home=tmp_path_factory.mktemp("monitored") / "home")
    shutil.copytree(trained_home.home, settings.home)
    kaggle_time = open_group(settings, HEART).read(columns=["event_time"])["event_time"].max()
    run_infer(settings, hours=24, now=kaggle_time.to_pydatetime() + timedelta(hours=1), artifacts=False)
    now = datetime.now(UTC)
    for days_ago in (3, 2, 1, 0):
        at = now - timedelta(days=days_ago, hours=2)
        last = days_ago == 0
        add_rows(settings, 600 if last else 400, "synthetic", at, seed=10 + days_ago,
                 bmi_shift=4.0 if last else 0.0)
        add_rows(settings, 15, "user", at, seed=20 + days_ago)
        run_infer(settings, hours=24, now=at + timedelta(hours=1), artifacts=False)
    return settings


@pytest.fixture
def client(monitored: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with TestClient(create_app(monitored), base_url="http://127.0.0.1") as test_client:  # an allowed Host
        yield test_client


def test_everything_answers_401_without_the_password(client: TestClient) -> None:
    page = client.get("/monitor")
    assert page.status_code == 401
    assert 'type="password"' in page.text and "chart-" not in page.text
    for name in API:
        for auth in (None, ("admin", "wrong"), ("someone", PASSWORD)):
            answer = client.get(f"/api/v1/monitor/{name}", auth=auth)
            assert answer.status_code == 401, (name, auth)
            assert answer.headers["www-authenticate"].startswith("Basic")
            assert "probability" not in answer.text
    forged = client.get("/api/v1/monitor/summary", cookies={"heartrisk_operator": "99999999999.abc"})
    assert forged.status_code == 401


def test_the_password_opens_the_page_and_the_api(client: TestClient) -> None:
    wrong = client.post("/monitor/login", data={"password": "guess"}, follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    right = client.post("/monitor/login", data={"password": PASSWORD}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/monitor"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/monitor")  # the session cookie is kept by the client
    assert page.status_code == 200
    for section in ("model-card", "chart-confusion", "chart-performance", "chart-shap", "chart-drift",
                    "chart-volume", "recent", "synthesizer"):
        assert f'id="{section}"' in page.text, section
    assert client.get("/api/v1/monitor/summary").status_code == 200
    client.post("/monitor/logout")
    client.cookies.clear()
    assert client.get("/monitor").status_code == 401
    assert client.get("/api/v1/monitor/model", auth=("admin", PASSWORD)).status_code == 200


def test_the_api_numbers_agree_with_the_store(client: TestClient, monitored: Settings) -> None:
    auth = ("admin", PASSWORD)
    stored = open_group(monitored, HEART_PREDICTIONS).read()
    summary = client.get("/api/v1/monitor/summary", auth=auth).json()
    assert summary["predictions"]["champion_rows"] == len(stored) == 6000 + 3 * 415 + 615
    assert summary["predictions"]["by_source"] == {"kaggle": 6000, "synthetic": 1800, "user": 60}
    confusion = client.get("/api/v1/monitor/confusion", auth=auth).json()
    assert np.sum(confusion["all"]) == len(stored)
    matrix = pd.crosstab(stored["heart_disease"], stored["prediction"]).to_numpy()
    assert confusion["all"] == matrix.tolist()
    assert np.sum(confusion["window"]) == 615  # the last day's rows

    performance = client.get("/api/v1/monitor/performance", auth=auth).json()
    assert sum(day["rows"] for day in performance["daily"]) == len(stored)
    assert len(performance["daily"]) >= 4

    drift = client.get("/api/v1/monitor/drift", auth=auth).json()
    assert drift["available"] and drift["window"]["rows"] == 615 and drift["window"]["enough"]
    assert "bmi" in drift["drifted"]
    flagged = {row["feature"]: row for row in drift["features"]}
    assert flagged["bmi"]["drifted"] and flagged["bmi"]["method"] == "wasserstein_normed"
    assert not flagged["sex"]["drifted"]
    assert "probability" in flagged

    recent = client.get("/api/v1/monitor/recent", auth=auth).json()
    assert recent["rows"] and {row["source"] for row in recent["rows"]} <= {"kaggle", "synthetic"}
    assert not any("user" in row["record_id"] for row in recent["rows"])
    volume = client.get("/api/v1/monitor/volume", auth=auth).json()
    assert sum(day.get("user", 0) or 0 for day in volume["heart_rows_by_day_and_source"]) == 60
    shap = client.get("/api/v1/monitor/shap", auth=auth).json()
    assert shap["available"] and len(shap["mean_abs"]) == 17
    model = client.get("/api/v1/monitor/model", auth=auth).json()["model"]
    assert model["version"] == "1" and model["feature_group"] == "heart_v1"
    assert 0 < model["threshold"] < 1 and "roc_auc" in model["test_metrics"]


def test_an_empty_home_says_what_to_run(ingested: Settings) -> None:
    """Before any model or prediction the page still renders and says what is missing."""
    app = FastAPI()
    mount_monitor(app, ingested, auth=OperatorAuth(PASSWORD, "env"))
    with TestClient(app) as test_client:
        page = test_client.get("/monitor", auth=("admin", PASSWORD))
        assert page.status_code == 200 and "heartrisk train" in page.text
        summary = test_client.get("/api/v1/monitor/summary", auth=("admin", PASSWORD)).json()
        assert summary["model"] is None and "heartrisk train" in summary["notes"][0]
        assert test_client.get("/api/v1/monitor/drift", auth=("admin", PASSWORD)).json() == {
            "available": False, "notes": summary["notes"]}


def test_a_password_is_generated_once_and_kept_private(settings: Settings,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    printed: list[str] = []
    password, source = operator_password(settings, announce=printed.append)
    path = password_path(settings)
    assert source == str(path) and len(password) >= 20
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(printed) == 1 and password in printed[0]
    again, _ = operator_password(settings, announce=printed.append)
    assert again == password and len(printed) == 1
    assert operator_password(settings, env={PASSWORD_ENV: "mine"}) == ("mine", "env")
    # Sessions no longer derive from the password (tests/web/guard/test_operator_sessions.py).


@pytest.mark.browser
def test_browser_logs_in_and_sees_the_plots(monitored: Settings, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    from heartrisk.web.server import BackgroundServer

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with BackgroundServer(monitored) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(server.url + "/monitor")
            page.fill("#password", "not it")
            page.click("button[type=submit]")
            assert page.locator("text=Wrong password").is_visible()
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#model-card")
            for chart in ("confusion", "performance", "shap", "drift", "probability", "volume"):
                page.wait_for_selector(f"#chart-{chart} .main-svg", timeout=20_000)
            assert page.locator("#chart-performance .scatterlayer .trace").count() >= 4
            assert page.locator("#drift .flag").count() >= 1
            assert "champion v1" in page.inner_text("#model-card")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
    (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, REPO / "docs" / "img" / "dashboard.png")
