"""Helpers of the reliability tests: the real CLI in subprocesses, the form's events over HTTP.

Everything runs on this machine: servers bind 127.0.0.1 and clients only ever talk to loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from heartrisk.config import Settings
from support.process import ServeProcess

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "reliability-operator-password"
#: One person's answers as the form sends them (text boxes for numbers, "Unknown" choices).
FORM_ANSWERS = ["25", "No", "No", "No", "", "", "No", "Male", "50-54", "White", "No", "Yes", "Good", "",
                "No", "No", "No"]


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `heartrisk` subprocess on this home (outside overrides removed)."""
    env = {**os.environ, "HEARTRISK_HOME": str(settings.home), "OMP_WAIT_POLICY": "PASSIVE",
           "HEARTRISK_ADMIN_PASSWORD": PASSWORD, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **extra}
    for name in ("MLFLOW_TRACKING_URI", "HEARTRISK_STORE_URI"):
        env.pop(name, None)
    return env


def heartrisk(args: Sequence[str], settings: Settings, log: Path | None = None,
              **extra: str) -> subprocess.Popen:
    """Start ``python -m heartrisk ARGS`` (output to ``log``, or discarded)."""
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "heartrisk", *args], env=cli_env(settings, **extra),
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def served(settings: Settings, log: Path, port: int | None = None, **extra: str) -> ServeProcess:
    """`heartrisk serve` on this home in its own process (``extra``: more environment)."""
    return ServeProcess(cli_env(settings, **extra), log, port, cwd=REPO)


def form_event(client: httpx.Client, fn_index: int, data: list[Any], session: str,
               timeout: float = 60) -> tuple[int, dict[str, Any] | None]:
    """One Gradio event the way the page sends it: join the queue, read the result from the stream.

    Returns the join's status and, if it was queued, the ``process_completed`` message."""
    joined = client.post("/gradio_api/queue/join", json={
        "data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
    if joined.status_code != 200:
        return joined.status_code, None
    deadline = time.monotonic() + timeout
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session},
                       timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return joined.status_code, message
            if time.monotonic() > deadline:
                break
    raise AssertionError("the form event never completed")


def form_fn_index(app: Any, concurrency_id: str) -> int:
    """The fn index of the mounted form's event with this concurrency id (``predict``, ``share``)."""
    for route in app.router.routes:
        blocks = getattr(getattr(route, "app", None), "get_blocks", None)
        if blocks is not None:
            for index, fn in blocks().fns.items():
                if fn.concurrency_id == concurrency_id:
                    return int(index)
    raise AssertionError(f"no form event {concurrency_id!r}")
