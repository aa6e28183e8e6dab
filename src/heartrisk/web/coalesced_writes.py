"""One socket write for a response's head and body, where uvicorn makes two.

uvicorn's h11 protocol writes the status line and headers as soon as a response starts and the body
in a second ``transport.write``: two ``send`` system calls, and two wake-ups of the client, for every
answer. :class:`CoalescedWrites` stands in for the connection's transport and holds back a write
until the next one, or until the event loop's current step ends (``call_soon``), so a response sent
in one step (every JSON answer) leaves in one system call, while a streamed one (the form's event
stream) still has its head sent at once. Everything but ``write`` is the real transport's; closing
sends what is held first, and more than :data:`HOLD_AT_MOST` bytes are not held.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Bytes held back at most: beyond it they are written at once, so uvicorn's flow control (which
#: pauses a sender past the transport's high-water mark, 64 KiB) sees a large body as before.
HOLD_AT_MOST = 64 * 1024


class CoalescedWrites:
    """A transport whose writes within one step of the event loop are joined into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= HOLD_AT_MOST:  # a large body sent in one step: let flow control see it now
            self.flush()

    def flush(self) -> None:
        """Send what is held (a no-op once sent, or on a closed connection)."""
        if not self._held:
            return
        data = b"".join(self._held)
        self._held.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
