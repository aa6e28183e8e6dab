"""Privacy: neither the server's output nor the home holds an address or identifier, and the server
listens on loopback only (`heartrisk forget` is tested in tests/jobs/test_forget.py)."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from heartrisk.config import Settings
from heartrisk.store.groups import HEART_USER, open_group
from support.files import files_holding
from support.reliability import served
from support.web import ANSWERS, copy_home

pytestmark = pytest.mark.reliability


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
