"""Helpers of the runtime tests: polling for a condition, another process holding the job lock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from heartrisk.config import Settings


def wait_for(condition, timeout: float = 20.0, step: float = 0.05) -> None:
    """Poll until ``condition()`` is true; fail with a clear message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)


HOLD = """
import sys, time
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.runtime.lock import job_lock
with job_lock(Settings(home=Path(sys.argv[1])), "infer", trigger="manual"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(settings: Settings, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.home), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc
