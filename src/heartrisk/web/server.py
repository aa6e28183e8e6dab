"""Running the app under uvicorn: in the foreground (``heartrisk serve``) or in a background thread.

:class:`BackgroundServer` is what tests, benchmarks and ``heartrisk up`` use: the real server on a
real port (0 picks a free one), started and stopped cleanly from the same process. For a server in
a child process see ``tests/support/process.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from heartrisk.config import Settings
from heartrisk.web.app import WebSettings, create_app
from heartrisk.web.guard.timeouts import with_request_deadline

#: uvicorn's own access log would record client addresses; we log no identifiers.
ACCESS_LOG = False


def uvicorn_config(settings: Settings, web: WebSettings, log_level: str = "info",
                   **app_kwargs: Any) -> uvicorn.Config:
    """uvicorn's settings for the app.

    Client identity: uvicorn believes ``X-Forwarded-For``/``-Proto`` only from the proxies listed in
    ``HEARTRISK_TRUSTED_PROXIES`` (none by default). Left to itself it trusts 127.0.0.1, so anything
    reaching the server through a local hop could name its own client address and start a fresh rate
    limit; and behind a proxy on another address, every user would be that proxy. The list is passed
    explicitly so uvicorn's ``FORWARDED_ALLOW_IPS`` default never applies.
    """
    security = web.security
    return uvicorn.Config(
        create_app(settings, web, **app_kwargs), host=web.host, port=web.port,
        access_log=ACCESS_LOG, log_level=log_level, timeout_graceful_shutdown=10,
        proxy_headers=bool(security.trusted_proxies),
        forwarded_allow_ips=list(security.trusted_proxies),
        http=with_request_deadline(security.request_timeout_s),
        # The app's own lifespan starts the model cache; uvicorn must run it.
        lifespan="on",
    )


def serve(settings: Settings, web: WebSettings | None = None) -> None:
    """Run the server until interrupted (Ctrl-C or SIGTERM)."""
    settings.ensure_home()
    uvicorn.Server(uvicorn_config(settings, web or WebSettings())).run()


class BackgroundServer:
    """The app on 127.0.0.1 in a daemon thread; use as a context manager.

    >>> with BackgroundServer(settings) as server:
    ...     httpx.get(server.url + "/api/v1/health")
    """

    def __init__(self, settings: Settings, web: WebSettings | None = None, log_level: str = "warning",
                 **app_kwargs: Any) -> None:
        web = web or WebSettings(port=0)
        config = uvicorn_config(settings, web, log_level=log_level, **app_kwargs)
        self.app = config.app
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def port(self) -> int:
        sockets = [s for server in self.server.servers for s in server.sockets]
        return sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

