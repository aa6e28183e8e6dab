"""Real servers for the scale-out tests, each a child process on 127.0.0.1: an S3 server (moto), a
proxy in front of it that drops conditional-write headers (a store that ignores them), an MLflow
tracking server with its artifacts on that S3, and redis-server.

Nothing here is a mock of our code: the product talks to them as it would to AWS S3, an MLflow server
and Redis in production, through its ordinary clients (delta-rs, obstore, boto3, redis-py).
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.process import free_port

#: Credentials moto accepts (it checks none); the same in every process of a test.
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_EC2_METADATA_DISABLED": "true"}


def s3_env(endpoint: str) -> dict[str, str]:
    """What every client needs to reach the S3 server: delta-rs and obstore read ``AWS_ENDPOINT_URL``,
    MLflow's boto3 client ``MLFLOW_S3_ENDPOINT_URL``."""
    return {**AWS, "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class Child:
    """A server process whose output goes to ``log``; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], log: Path, port: int, env: Mapping[str, str] | None = None,
                 ready_s: float = 120) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            env=dict(env) if env is not None else None)
        wait_port(port, self.process, log, ready_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def moto_server(log: Path) -> Child:
    """moto's S3 server (it honours ``If-None-Match`` and ``If-Match`` on PUT)."""
    port = free_port()
    return Child([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log, port)


def create_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **{"aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
                 "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"], "region_name": AWS["AWS_REGION"]}
                 ).create_bucket(Bucket=name)


def mlflow_server(log: Path, database: Path, artifacts: str, endpoint: str,
                  env: Mapping[str, str]) -> Child:
    """``mlflow server`` on SQLite with its artifacts on the S3 server: ``--default-artifact-root``
    without proxying, so every client reads and writes the artifacts on S3 itself (needs boto3 on the
    client: the ``heartrisk[s3]`` extra)."""
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    return Child([mlflow, "server", "--backend-store-uri", f"sqlite:///{database}",
                  "--default-artifact-root", artifacts, "--no-serve-artifacts",
                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                 log, port, env={**env, **s3_env(endpoint)}, ready_s=180)


def redis_server(log: Path, folder: Path) -> Child:
    """Debian's redis-server on a free port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
    port = free_port()
    return Child([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(folder)], log, port)


class HeaderStrippingProxy:
    """An HTTP proxy to the S3 server that drops ``If-None-Match`` and ``If-Match`` from every request:
    an S3-compatible store that ignores conditional writes, as some do."""

    DROPPED = ("if-none-match", "if-match")

    def __init__(self, target_port: int) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.DROPPED}
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
