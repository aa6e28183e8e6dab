"""A deadline for reading each request: half-sent requests are closed, not kept open for ever.

uvicorn (0.54, h11) sets a timer only between requests on a kept-alive connection (``timeout_keep_alive``);
once a client has sent the first bytes of a request, nothing limits how long the rest may take. Issue
12 left 300 connections that stopped inside their headers or body: all were still open after 40 s,
each holding a socket and the memory of its partial request (slowloris). The protocol class here starts
a timer with a request's first bytes and closes the connection if the headers and the body have not
all arrived ``request_timeout_s`` later. A new connection's first request is timed from the moment
the connection opens, so one that never sends a byte is closed too (a browser's preconnected, still
idle socket as well: it opens another). A request that has been read whole is not timed: a long
answer (the form's event stream) is not cut.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request (:func:`with_request_deadline`)."""

    request_timeout_s: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a byte is timed from its opening: 19,980 silent ones stayed
        # open, the server ran out of file descriptors and asyncio logged 234 MB about it in 45 s.
        self._deadline: asyncio.TimerHandle | None = self.loop.call_later(self.request_timeout_s,
                                                                          self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self._between_requests():
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)
        super().data_received(data)
        if self._deadline is not None and self._request_read():
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        """No request is being read: these bytes start a new one."""
        return self.cycle is None or self.cycle.response_complete

    def _request_read(self) -> bool:
        """The current request's headers and whole body have arrived."""
        return self.cycle is not None and not self.cycle.response_complete and not self.cycle.more_body

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._request_read() and not self.transport.is_closing():
            self.transport.close()


def with_request_deadline(seconds: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for a deadline of ``seconds``."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout_s": float(seconds)})
