"""``bench.load.loop.KernelReceive``: the harness stamps a message when it reached the socket,
not when the harness got round to it, and a connection read that way still closes as usual."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.load.loop import KernelReceive
from engine.io.direct import DirectClientConnection, DirectServerConnection, Message, send_now

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")

BLOCK_S = 0.05


async def _read_from(
    handler: Any,
) -> tuple[list[tuple[str, float, float]], KernelReceive, DirectClientConnection]:
    """Serve ``handler`` on loopback; a direct client reads it through :class:`KernelReceive`, says
    "ready" once receive timestamping is on, and keeps each message with its kernel arrival and the
    time its loop got it, until the connection closes."""
    got: list[tuple[str, float, float]] = []
    async with serve(handler, "127.0.0.1", 0, compression=None, create_connection=DirectServerConnection) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}", compression=None, create_connection=DirectClientConnection)
        assert isinstance(ws, DirectClientConnection)
        rx: KernelReceive | None = None

        def on_message(message: Message) -> None:
            assert rx is not None
            got.append((str(message), rx.rx, rx.app))

        ws.attach(on_message)
        rx = KernelReceive(ws)
        # Linux turns receive timestamping on for the whole stack a moment after the first socket
        # asks (a deferred static key); until then it stamps data when it is read.
        await asyncio.sleep(0.2)
        await ws.send("ready")
        await asyncio.wait_for(ws.wait_closed(), 5.0)
    return got, rx, ws


async def _exchange() -> tuple[list[tuple[str, float, float]], float, KernelReceive, DirectClientConnection]:
    sent_at: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        await ws.recv()  # the client is ready
        for n in range(3):
            sent_at.append(time.monotonic())
            send_now(ws, f"message {n}", True)
        time.sleep(BLOCK_S)  # the whole process is busy: the client's loop cannot read meanwhile
        await asyncio.sleep(0.1)  # the client reads (before the close frame joins the messages)
        await ws.close()

    got, rx, ws = await _read_from(handler)
    return got, sent_at[0], rx, ws


def test_arrival_is_stamped_by_the_kernel_not_by_the_busy_reader() -> None:
    got, first_sent, rx, _ = asyncio.run(_exchange())
    assert rx.kernel
    assert [text for text, _, _ in got] == ["message 0", "message 1", "message 2"]
    for _, arrived, seen in got:
        assert first_sent - 0.001 <= arrived <= seen
        # the reader was held up for BLOCK_S after the data arrived; the stamp does not say so
        assert seen - arrived >= BLOCK_S * 0.8
        assert arrived - first_sent < BLOCK_S * 0.5


def test_the_connection_still_closes_cleanly_and_lets_go_of_the_socket() -> None:
    _, _, rx, ws = asyncio.run(_exchange())
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    assert rx._sock is None  # the duplicate descriptor is closed: it holds no socket open
    assert ws.transport.is_closing()


async def _stamped_sends() -> tuple[list[tuple[bool, float, float]], list[tuple[str, float]], KernelReceive]:
    """The server sends three messages with ``send_stamped`` and one with ``send_now``; the client
    keeps each arrival's kernel stamp."""
    sends: list[tuple[bool, float, float]] = []
    server_rx: list[KernelReceive] = []

    async def handler(ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        ws.attach(lambda message: None)
        rx = KernelReceive(ws)
        server_rx.append(rx)
        await asyncio.sleep(0.2)  # (receive timestamping turns on a moment after it is asked for)
        for n in range(3):
            before = time.monotonic()
            written, at = rx.send_stamped(f"clear {n}".encode(), True)
            sends.append((written, before, at))
        send_now(ws, "after", True)
        await asyncio.sleep(0.1)
        await ws.close()

    got, _, _ = await _read_from(handler)
    return sends, [(text, arrived) for text, arrived, _ in got], server_rx[0]


def test_a_stamped_send_is_timed_by_the_kernel_when_it_left() -> None:
    sends, got, server = asyncio.run(_stamped_sends())
    assert server.tx_capable and server.tx_stamped == 3
    # whole messages, in order, the plain send after them
    assert [text for text, _ in got] == ["clear 0", "clear 1", "clear 2", "after"]
    for (written, before, left), (_, arrived) in zip(sends, got, strict=False):
        assert written
        # left after the sender decided to send, and no later than the data reached the other socket
        assert before <= left <= arrived + 0.0005
    assert server._sock is None  # closed cleanly: the duplicate descriptor let go
