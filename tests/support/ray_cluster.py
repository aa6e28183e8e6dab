"""A local Ray cluster on loopback for the engine tests: a ``ray start --block`` child of the test in
a session of its own, so stopping it ends every process it started (and no other Ray on the machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from support.process import free_port

RAY = Path(sys.executable).with_name("ray")


class RayCluster:
    """One Ray node on 127.0.0.1 with ``workers`` CPUs, so up to that many worker processes run tasks.

    One node, not a node per worker: on 2 loaded cores a second raylet did not register with the GCS
    within Ray's start-up timeout (seen here at a load average of 25)."""

    def __init__(self, log: Path, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's socket paths must stay under 107 characters: a short folder of our own under /tmp.
        self.temp = Path(tempfile.mkdtemp(prefix="hr-ray-", dir="/tmp"))
        self.log = log
        self.env = {**(env or os.environ), "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_raylet_start_wait_time_s": "300"}
        self.nodes: list[subprocess.Popen] = []
        try:
            self._start(["--head", f"--port={self.port}", f"--num-cpus={workers}", f"--temp-dir={self.temp}",
                         "--include-dashboard=false", "--node-ip-address=127.0.0.1"])
            self._wait_for(workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str]) -> None:
        with self.log.open("ab") as out:
            self.nodes.append(subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args],
                                               stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True))

    def _wait_for(self, cpus: int, timeout: float = 180) -> None:
        """Until the cluster reports ``cpus`` CPUs (each worker node adds one)."""
        deadline = time.monotonic() + timeout
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(int(ray.cluster_resources().get('CPU', 0)))")
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.poll() is not None:
                    raise RuntimeError(f"a Ray node exited:\n{self.log.read_text()[-3000:]}")
            done = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                  env=self.env, timeout=120)
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(cpus)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster never had {cpus} CPUs:\n{self.log.read_text()[-3000:]}")

    def worker_processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of the Ray worker processes of this cluster (``ray::…`` titles)."""
        found = []
        for pid in self._descendants():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if title.startswith("ray::"):
                found.append((pid, title))
        return found

    def _descendants(self) -> Iterator[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
        stack = [node.pid for node in self.nodes]
        while stack:
            pid = stack.pop()
            for child in children.get(pid, []):
                yield child
                stack.append(child)

    def stop(self) -> None:
        """SIGTERM to each node's session (its raylet, workers and stores), then SIGKILL what is left
        of the processes they had started (listed first: once a node is gone they are nobody's)."""
        started = list(self._descendants())
        for node in reversed(self.nodes):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for node in self.nodes:
            try:
                node.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        for pid in started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)
