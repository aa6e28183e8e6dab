"""A deadline for reading each request: half-sent requests are closed, not kept open for ever.

uvicorn (0.54, h11) sets a timer only between requests on a kept-alive connection (``timeout_keep_alive``);
once a client has sent the first bytes of a request, nothing limits how long the rest may take. Issue
12 left 300 connections that stopped inside their headers or body: all were still open after 40 s,
each holding a socket and the memory of its partial request (slowloris). The protocol class here
times each request from the moment the connection opens or the previous response ends, and closes
the connection if its headers and body have not all arrived ``request_timeout_s`` later: a connection
that never sends a byte (session 5: 19,980 of them ran out the file descriptors), and a request
pipelined behind another, which uvicorn reads from h11's buffer rather than the network, are timed
too. So the first request on a connection has what is left of the deadline after the connection
opened (a browser's preconnected, still idle socket is closed as well: it opens another), and a
kept-alive connection's next request has what is left after the last response. A request that has
been read whole is not timed: a long answer (the form's event stream) is not cut.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

from heartrisk.web.coalesced_writes import CoalescedWrites


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request (:func:`with_request_deadline`)."""

    request_timeout_s: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        # A connection that never sends a byte is timed from its opening: 19,980 silent ones stayed
        # open, the server ran out of file descriptors and asyncio logged 234 MB about it in 45 s.
        self._time_the_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_read():
            self._stop_timing()

    def on_response_complete(self) -> None:
        # uvicorn reads a pipelined request from h11's buffer here, not in data_received: timed only
        # from data_received, a whole request plus half of the next in one write was never closed.
        super().on_response_complete()
        if not self.transport.is_closing():
            self._time_the_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timing()
        super().connection_lost(exc)

    def _time_the_request(self) -> None:
        """Time the request to come, or the one half read; nothing if it has been read whole."""
        self._stop_timing()
        if not self._request_read():
            self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _stop_timing(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

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
