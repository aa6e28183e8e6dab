"""Privacy: `heartrisk forget` removes a submission for good (time travel included), the dashboard
lists no person's row, and neither the server's output nor the home holds an address or identifier."""

from __future__ import annotations

import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.jobs.daily import run_daily
from heartrisk.jobs.forget import check_submission_id
from heartrisk.jobs.infer import run_infer
from heartrisk.sources.submissions import add_submission
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, HEART_USER, QUARANTINE, open_group
from heartrisk.store.table import FeatureGroup
from heartrisk.web.guard import auth
from heartrisk.web.server import BackgroundServer
from support.reliability import PASSWORD, served
from support.web import ANSWERS, copy_home

MONITOR_API = ["summary", "model", "performance", "confusion", "drift", "volume", "recent", "shap",
               "synthesizer"]


def ids_in(group: FeatureGroup, column: str, **read: object) -> set[str]:
    return set(group.read(columns=[column], **read)[column]) if group.exists() else set()


def every_version_without(group: FeatureGroup, column: str, value: str) -> int:
    """Reads every version still readable; fails if one holds ``value``. Returns how many were."""
    readable = 0
    for version in range(group.version() + 1):
        try:
            frame = group.read(version=version, columns=[column])
        except Exception:
            continue  # vacuumed away: nothing to read back
        readable += 1
        assert value not in set(frame[column]), f"{group.spec.table_name} version {version} holds it"
    return readable


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_only_a_uuid_is_accepted_as_a_submission_id() -> None:
    good = str(uuid.uuid4())
    assert check_submission_id(good.upper()) == good
    for bad in ["", "42", "x' OR '1'='1", f"{good}' OR '1'='1", f"{good[:-1]}g", "{" + good + "}",
                good.replace("-", "")]:
        with pytest.raises(ValueError, match="is not a submission id"):
            check_submission_id(bad)


@pytest.mark.reliability
def test_forget_removes_a_submission_everywhere_for_good(trained: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = trained
    victim, *others = [add_submission(settings, {**ANSWERS, "bmi": 25.0 + i}, i % 2 == 0) for i in range(3)]
    held = add_submission(settings, {}, True)  # quarantined (no answers): forget must find it there too
    merged = run_daily(settings, synthetic=0)
    assert (merged.user_rows, merged.quarantined) == (3, 1)
    scored = run_infer(settings, hours=1, now=datetime.now(UTC) + timedelta(minutes=1))
    assert scored.inserted == 3  # the three user rows (the Kaggle rows are older than an hour)
    reference = settings.monitoring_dir / "reference" / "model-test.parquet"
    reference.parent.mkdir(parents=True, exist_ok=True)  # a cached sample holding the person's row
    pd.DataFrame({"record_id": [f"user:{victim}", "kaggle:x:2"], "bmi": [25.0, 30.0]}).to_parquet(reference)

    groups = {"user": open_group(settings, HEART_USER), "heart": open_group(settings, HEART),
              "predictions": open_group(settings, HEART_PREDICTIONS),
              "quarantine": open_group(settings, QUARANTINE)}
    record = f"user:{victim}"
    assert victim in ids_in(groups["user"], "submission_id")
    assert record in ids_in(groups["heart"], "record_id")
    assert record in ids_in(groups["predictions"], "record_id")
    counts = {name: group.count() for name, group in groups.items()}
    before = datetime.now(UTC)

    # The dashboard shows aggregates: no person's row, by id, anywhere in its API.
    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for name in MONITOR_API:
            answer = client.get(f"/api/v1/monitor/{name}", auth=("admin", PASSWORD))
            assert answer.status_code == 200 and "user:" not in answer.text, name

    result = CliRunner().invoke(app, ["forget", victim])
    assert result.exit_code == 0, result.output
    assert "removed 3 row(s)" in " ".join(result.output.split())
    assert victim not in ids_in(groups["user"], "submission_id")
    assert record not in ids_in(groups["heart"], "record_id")
    assert record not in ids_in(groups["predictions"], "record_id")
    assert {name: group.count() for name, group in groups.items()} == {
        "user": counts["user"] - 1, "heart": counts["heart"] - 1,
        "predictions": counts["predictions"] - 1, "quarantine": counts["quarantine"]}
    assert set(others) <= ids_in(groups["user"], "submission_id")

    # Time travel: every version still readable lacks it, and no file of the store holds the id.
    for name, group in groups.items():
        column = "submission_id" if name in ("user", "quarantine") else "record_id"
        value = victim if column == "submission_id" else record
        assert every_version_without(group, column, value) >= 1
        try:  # as of a moment before the forget: gone too (an error, or a later version's rows)
            assert value not in set(group.read(as_of=before - timedelta(seconds=30))[column])
        except AssertionError:
            raise
        except Exception:
            pass
    assert files_holding(Path(settings.store_root), victim.encode()) == []
    assert pd.read_parquet(reference)["record_id"].tolist() == ["kaggle:x:2"]

    # The quarantined one goes too; a second forget finds nothing; a bad id changes nothing.
    assert CliRunner().invoke(app, ["forget", held]).exit_code == 0
    assert held not in ids_in(groups["quarantine"], "submission_id")
    again = CliRunner().invoke(app, ["forget", victim])
    assert again.exit_code == 0 and "no rows held" in again.output
    versions = {name: group.version() for name, group in groups.items()}
    injected = CliRunner().invoke(app, ["forget", "x' OR '1'='1"])
    assert injected.exit_code == 2 and "is not a submission id" in injected.output
    assert {name: group.version() for name, group in groups.items()} == versions
    assert run_daily(settings, synthetic=0).user_rows == 0  # and the merge does not bring it back


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = Path(table).read_text() if Path(table).exists() else ""
        for address, hex_port in re.findall(r"^\s*\d+: ([0-9A-F]+):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A ",
                                            text, re.MULTILINE):
            if int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address)
    return found


@pytest.mark.reliability
def test_no_address_or_identifier_is_logged_or_stored(trained_home: Settings, tmp_path: Path) -> None:
    home = copy_home(trained_home, tmp_path / "home")
    log = tmp_path / "serve.log"
    agent = f"agent-{uuid.uuid4()}"
    forwarded = "203.0.113.77"
    headers = {"user-agent": agent, "x-forwarded-for": forwarded, "x-real-ip": forwarded}
    with served(home, log) as server:
        assert listening_addresses(server.port) == {"127.0.0.1"}  # loopback only, by default
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, transport=transport, headers=headers, timeout=60) as client:
            ids = [client.post("/api/v1/submissions", json={**ANSWERS, "heart_disease": b, "consent": True})
                   .json()["submission_id"] for b in (True, False)]
            assert client.post("/api/v1/predict", json=ANSWERS).status_code == 200
            assert client.post("/api/v1/predict", json={"bmi": "x"}).status_code == 422
            assert client.get("/").status_code == 200 and client.get("/nothing").status_code == 404
            assert client.post("/monitor/login", data={"password": "guess"}).status_code == 401
            assert client.get("/api/v1/monitor/summary", auth=("admin", "guess")).status_code == 401
        with socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0)) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            raw.recv(1024)
    output = log.read_text()
    assert "Uvicorn running on" in output or "serving on" in output  # the log was captured
    for secret in ("127.0.0.2", forwarded, agent, *ids):
        assert secret not in output, secret
    for secret in ("127.0.0.2", forwarded, agent):
        assert files_holding(home.home, secret.encode()) == [], secret
    assert open_group(home, HEART_USER).spec.columns == HEART_USER.columns
    assert not {"ip", "address", "client", "user_agent"} & set(HEART_USER.columns)


def test_uvicorn_client_lines_lose_the_address(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from heartrisk.web.app import WebSettings
    from heartrisk.web.server import uvicorn_config

    monkeypatch.setenv(auth.PASSWORD_ENV, PASSWORD)
    uvicorn_config(settings, WebSettings(port=0))  # the app, then uvicorn's own logging set-up
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.2:51234", "/x")
        logger.info("Uvicorn running on %s://%s:%d", "http", "127.0.0.1", 80)
    finally:
        logger.removeHandler(handler)
    assert seen == ['- - "WebSocket /x" [accepted]', "Uvicorn running on http://127.0.0.1:80"]
