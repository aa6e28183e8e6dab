"""A deadline for reading each request: half-sent requests are closed, not kept open for ever.

uvicorn (0.54) sets a timer only between requests on a kept-alive connection (``timeout_keep_alive``);
once a client has sent the first bytes of a request, nothing limits how long the rest may take. Issue
12 left 300 connections that stopped inside their headers or body: all were still open after 40 s,
each holding a socket and the memory of its partial request (slowloris). The protocol class here starts
a timer with a request's first bytes and closes the connection if the headers and the body have not
all arrived ``request_timeout_s`` later. A request that has been read whole is not timed: a long
answer (the form's event stream) is not cut.

The deadline sits on uvicorn's httptools protocol (its C parser: 0.1-0.25 ms less server CPU a
request than the pure-Python h11, bench/serve.py) and on h11 where httptools is not installed; both
keep the request being read in ``cycle`` with the same two flags, which is all the deadline reads.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is a dependency; a platform without its wheel falls back to h11
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

Protocol = H11Protocol | HttpToolsProtocol


class RequestDeadline:
    """Mixed into one of uvicorn's HTTP protocols: a read deadline per request
    (:func:`with_request_deadline`)."""

    request_timeout_s: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self._between_requests():
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)  # type: ignore[attr-defined]
        super().data_received(data)  # type: ignore[misc]
        if self._deadline is not None and self._request_read():
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _between_requests(self) -> bool:
        """No request is being read: these bytes start a new one."""
        cycle = self.cycle  # type: ignore[attr-defined]
        return cycle is None or cycle.response_complete

    def _request_read(self) -> bool:
        """The current request's headers and whole body have arrived."""
        cycle = self.cycle  # type: ignore[attr-defined]
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def _too_slow(self) -> None:
        self._deadline = None
        transport = self.transport  # type: ignore[attr-defined]
        if not self._request_read() and not transport.is_closing():
            transport.close()


def with_request_deadline(seconds: float, parser: str = "httptools") -> type[Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for a deadline of ``seconds``;
    ``parser`` is ``httptools`` (h11 when it is not installed) or ``h11``."""
    base = HttpToolsProtocol if parser == "httptools" and HttpToolsProtocol is not None else H11Protocol
    return type(f"Deadline{base.__name__}", (RequestDeadline, base),
                {"request_timeout_s": float(seconds)})
