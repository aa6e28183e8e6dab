"""``heartrisk serve`` in a child process, for the checks that must signal or kill the server.

The crash, load and privacy tests, ``bench/load.py``, ``bench/serve.py`` and ``bench/up.py`` run the
real command as users do and send it SIGTERM or SIGKILL, which :class:`~heartrisk.web.server.
BackgroundServer` (a thread of the caller) cannot take. Kept apart from the app so that importing
it costs nothing: no web framework is loaded in the parent.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def responds(url: str) -> bool:
    """Whether a GET of ``url`` answers 200 (False while nothing listens yet)."""
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class ServeProcess:
    """``heartrisk serve`` on 127.0.0.1 in a child process, its output appended to ``log``.

    ``env`` is the child's whole environment (``HEARTRISK_HOME`` and friends). Use as a context
    manager (ready on entry, SIGTERM on exit) or call :meth:`wait_ready`, :meth:`stop`, :meth:`kill`.
    """

    def __init__(self, env: Mapping[str, str], log: Path, port: int | None = None,
                 cwd: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "heartrisk", "serve", "--port", str(self.port)],
                env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)

    def wait_ready(self, timeout: float = 180, need_model: bool = True) -> ServeProcess:
        """Wait until the health check answers (with a model, unless ``need_model`` is False)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"heartrisk serve exited with {self.process.returncode}:\n"
                                   + self.log.read_text()[-3000:])
            try:
                health = httpx.get(self.url + "/api/v1/health", timeout=5).json()
                if health.get("status") == "ok" or not need_model:
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"heartrisk serve did not become ready within {timeout:.0f} s:\n"
                           + self.log.read_text()[-3000:])

    def stop(self) -> int:
        """SIGTERM (a graceful stop), SIGKILL after a minute; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def __enter__(self) -> ServeProcess:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()
