"""One socket write per response (web/coalesced_writes.py): what a step of the event loop writes
leaves together, a streamed head still leaves at once, and nothing is lost on close.

The transport below records the writes the real one would make; the end-to-end check is the real
server answering through it (test_serve.py, the browser tests' event streams)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from heartrisk.web.coalesced_writes import CoalescedWrites


class Recorder:
    """The part of an asyncio transport CoalescedWrites uses, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"real:{name}"


async def step() -> None:
    """Let the loop run what was scheduled with call_soon."""
    await asyncio.sleep(0)


def test_writes_of_one_step_leave_in_one_write() -> None:
    async def main() -> list[bytes]:
        real = Recorder()
        transport = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")  # h11's end of a Content-Length body: nothing to send
        transport.write(memoryview(b'{"ok": true}'))
        assert real.writes == [] and transport.get_write_buffer_size() == 31
        await step()
        transport.write(b"next")
        await step()
        return real.writes

    assert asyncio.run(main()) == [b'HTTP/1.1 200 OK\r\n\r\n{"ok": true}', b"next"]


def test_a_head_alone_leaves_after_the_step_and_close_sends_what_is_held() -> None:
    async def main() -> tuple[list[bytes], list[bytes], bool]:
        streamed, closing = Recorder(), Recorder()
        loop = asyncio.get_running_loop()
        head = CoalescedWrites(streamed, loop)  # type: ignore[arg-type]
        head.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        await step()  # an event stream's head must not wait for its first event
        last = CoalescedWrites(closing, loop)  # type: ignore[arg-type]
        last.write(b"bye")
        last.close()
        await step()  # the scheduled flush finds nothing left to send
        assert last.get_extra_info("peername") == "real:peername"
        return streamed.writes, closing.writes, closing.closed

    streamed, closing, closed = asyncio.run(main())
    assert streamed == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]
    assert closing == [b"bye"] and closed


def test_a_large_body_is_not_held_past_the_high_water_mark() -> None:
    """A body streamed in one step must reach the transport (and its flow control) as it goes."""
    async def main() -> tuple[list[int], int]:
        real = Recorder()
        transport = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head")
        for _ in range(3):
            transport.write(b"x" * 40_000)
        held = transport.get_write_buffer_size()
        await step()
        return [len(w) for w in real.writes], held

    sizes, held = asyncio.run(main())
    assert sizes == [80_004, 40_000] and held == 40_000


def test_nothing_is_written_to_a_closed_connection() -> None:
    async def main() -> list[bytes]:
        real = Recorder()
        transport = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"late")
        real.closed = True  # the client went away before the step ended
        await step()
        return real.writes

    assert asyncio.run(main()) == []


@pytest.mark.parametrize("pipelined", [1, 3])
def test_the_real_server_answers_whole_responses_through_it(trained_home, pipelined: int) -> None:
    """Whole JSON answers on one keep-alive connection, pipelined ones too, each parsed intact."""
    from heartrisk.web.app import WebSettings
    from heartrisk.web.server import BackgroundServer

    request = (b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") * pipelined
    with (BackgroundServer(trained_home, WebSettings(port=0, poll_seconds=0)) as server,
          socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock):
        sock.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 200") < pipelined or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            received += chunk
        protocols = list(server.server.server_state.connections)
        assert protocols and all(isinstance(p.transport, CoalescedWrites) for p in protocols)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert [json.loads(body)["status"] for body in bodies] == ["ok"] * pipelined
