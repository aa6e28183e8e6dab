"""The server's life: no model yet (503 with a reason), a champion that moves while it runs (served
within seconds, no restart), and `heartrisk serve` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.model.registry import champion_version, promote, rollback
from heartrisk.web.app import WebSettings
from heartrisk.web.server import BackgroundServer
from support.process import free_port
from support.web import ANSWERS, copy_home

#: How often the test servers look for a new champion (the default is 5 s).
POLL = WebSettings(port=0, poll_seconds=0.3)


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def test_without_a_model_the_api_says_why(settings: Settings) -> None:
    with BackgroundServer(settings, POLL) as server, httpx.Client(base_url=server.url) as client:
        health = client.get("/api/v1/health").json()
        assert health["status"] == "no model" and health["model_version"] is None
        assert "heartrisk train" in health["detail"]
        for response in (client.post("/api/v1/predict", json=ANSWERS), client.get("/api/v1/model")):
            assert response.status_code == 503
            assert "heartrisk train" in response.json()["detail"]
        assert client.get("/").status_code == 200  # the page itself still loads (and says so)


def test_a_moved_champion_is_served_without_restart(trained: Settings) -> None:
    from heartrisk.jobs.train import TrainSettings, train

    served = lambda client: client.get("/api/v1/health").json()["model_version"]  # noqa: E731
    with BackgroundServer(trained, POLL) as server, httpx.Client(base_url=server.url) as client:
        assert served(client) == "1"
        second = train(trained, TrainSettings.for_quick(families=("logreg",), treatments=("none",)))
        if not second.promoted:
            promote(trained, second.version, "test: move the alias")
        assert champion_version(trained) == second.version == "2"
        wait_for(lambda: served(client) == "2", what="serving version 2")
        assert client.post("/api/v1/predict", json=ANSWERS).json()["model_version"] == "2"
        assert client.get("/api/v1/model").json()["family"] == "logreg"
        assert rollback(trained) == "1"
        wait_for(lambda: served(client) == "1", what="serving version 1 again")
        assert client.post("/api/v1/predict", json=ANSWERS).json()["model_version"] == "1"


def test_heartrisk_serve_command(trained_home: Settings, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path / "home")
    port = free_port()
    env = {**os.environ, "HEARTRISK_HOME": str(home.home), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HEARTRISK_STORE_URI", None)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "heartrisk", "serve", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(url + "/api/v1/health").json()["model_version"] == "1"
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=120, what="`heartrisk serve` answering")
        assert httpx.post(url + "/api/v1/predict", json=ANSWERS).json()["model_version"] == "1"
        assert "/api/v1/predict" in httpx.get(url + "/openapi.json").json()["paths"]
        assert httpx.get(url + "/").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code in (0, 130), output  # uvicorn re-raises Ctrl-C after a clean shutdown: 128 + SIGINT
    assert "Application shutdown complete" in output
    assert f"serving on http://127.0.0.1:{port}" in output
