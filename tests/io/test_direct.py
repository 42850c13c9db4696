"""engine.io.direct: messages delivered from the read callback, written without awaiting.

Real ``websockets`` servers and clients on 127.0.0.1 (ephemeral ports), on both event loops the
project runs on (asyncio's own, and uvloop as ``callbridge serve`` uses). Every wait is bounded;
"all earlier frames were processed" is told by a ping's pong, which the peer only sends once it
has parsed every frame before the ping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.streams import StreamReader

from engine.io.direct import (
    HOLD_LIMIT,
    SLICE_BYTES,
    DirectClientConnection,
    DirectServerConnection,
    MaskKeys,
    Message,
    frame_bytes,
    send_now,
)

T = TypeVar("T")
WAIT_S = 10.0  # bound on any single wait; a healthy run takes milliseconds

Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "asyncio":
        return None
    uvloop = pytest.importorskip("uvloop")
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Run an async test body on a fresh loop of the parametrised kind, bounded."""
    factory = _loop_factory(request.param)

    def runner(body: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            async with asyncio.timeout(4 * WAIT_S):
                return await body()

        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(bounded())

    return runner


class Peer:
    """A server on an ephemeral port whose connections the test drives from outside."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[DirectServerConnection] = asyncio.Queue()
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        await self.connections.put(ws)
        await ws.wait_closed()  # returning would close the connection under the test

    async def accepted(self) -> DirectServerConnection:
        async with asyncio.timeout(WAIT_S):
            return await self.connections.get()


def _switch_to_direct(connection: ServerConnection, request: Request) -> None:
    assert isinstance(connection, DirectServerConnection)
    connection.direct = True  # as BridgeServer._take_call does for a call


@contextlib.asynccontextmanager
async def direct_server(direct: bool = True, handler: Any = None, **options: Any) -> AsyncIterator[Peer]:
    peer = Peer()
    async with serve(
        handler or peer.handler,
        "127.0.0.1",
        0,
        create_connection=DirectServerConnection,
        process_request=_switch_to_direct if direct else None,
        ping_interval=None,
        compression=None,
        **options,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        peer.url = f"ws://127.0.0.1:{port}"
        yield peer


@contextlib.asynccontextmanager
async def direct_client(url: str) -> AsyncIterator[DirectClientConnection]:
    async with connect(url, create_connection=DirectClientConnection, ping_interval=None, compression=None) as ws:
        assert isinstance(ws, DirectClientConnection)
        yield ws


async def barrier(ws: ClientConnection | ServerConnection) -> None:
    """Return once the peer has processed every frame ``ws`` sent before this call."""
    async with asyncio.timeout(WAIT_S):
        await (await ws.ping())


class Collector:
    """An ``on_message`` callback that records messages and can be awaited for a count."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._wanted = 0
        self._reached = asyncio.Event()

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        if self._wanted and len(self.messages) >= self._wanted:
            self._reached.set()

    async def until(self, count: int) -> list[Message]:
        if len(self.messages) < count:
            self._wanted = count
            self._reached.clear()
            async with asyncio.timeout(WAIT_S):
                await self._reached.wait()
        return self.messages


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll a condition the library offers no notification for (bounded, not a timing check)."""
    try:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


# ---------------------------------------------------------------------- receiving


def test_messages_before_attach_are_held_then_delivered_in_order(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            early: list[Message] = ["one", b"\x00two\xff", "thrée", b""]
            for message in early:
                await client.send(message)
            await barrier(client)  # all four are parsed on the server, nobody attached yet

            got = Collector()
            ws.attach(got)
            assert got.messages == early  # delivered inside attach(), in order
            assert [type(m) for m in got.messages] == [str, bytes, str, bytes]

            late: list[Message] = [b"\x01", "five", "", b"six" * 1000]
            for message in late:
                await client.send(message)
            assert await got.until(len(early) + len(late)) == early + late
            assert [type(m) for m in got.messages[len(early) :]] == [bytes, str, str, bytes]

    run(body)


def test_client_connection_holds_until_its_bridge_attaches(run: Runner) -> None:
    async def body() -> None:
        async def speak_first(ws: ServerConnection) -> None:  # an AI that greets on connect
            await ws.send("hello")
            await ws.send(b"\x00\x01")
            await ws.wait_closed()

        async with direct_server(direct=False, handler=speak_first) as peer, direct_client(peer.url) as client:
            assert client.direct  # an AI leg is direct from the start
            await barrier(client)  # the server's pong follows both messages
            got = Collector()
            client.attach(got)
            assert got.messages == ["hello", b"\x00\x01"]

    run(body)


def test_fragmented_messages_arrive_whole(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            # One fragmented text and one fragmented binary message, held before attach...
            await client.send(["frag", "men", "tëd"])
            await client.send([b"\x00\x01", b"", b"\x02\xff"])
            await barrier(client)
            got = Collector()
            ws.attach(got)
            assert got.messages == ["fragmentëd", b"\x00\x01\x02\xff"]

            # ...and after: a character split across fragments, a ping between fragments.
            encoded = "wörld".encode()
            client.protocol.send_frame(Frame(Opcode.TEXT, encoded[:2], fin=False))  # ends inside "ö"
            client.protocol.send_ping(b"between")
            client.protocol.send_frame(Frame(Opcode.CONT, encoded[2:4], fin=False))
            client.protocol.send_frame(Frame(Opcode.CONT, encoded[4:], fin=True))
            client.send_data()
            await client.send([b"bin", b"ary"])
            await client.send("single")
            assert await got.until(5) == ["fragmentëd", b"\x00\x01\x02\xff", "wörld", b"binary", "single"]
            assert [type(m) for m in got.messages] == [str, bytes, str, bytes, str]

    run(body)


def test_invalid_utf8_in_a_text_frame_closes_with_1007(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            ws.attach(got)
            await client.send("fine")
            client.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe"))
            client.protocol.send_text(b"after the bad frame")  # same write: must not be delivered
            client.send_data()
            async with asyncio.timeout(WAIT_S):
                await client.wait_closed()
                await ws.wait_closed()
            assert client.close_code == 1007  # the close frame the client received
            assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1007
            assert got.messages == ["fine"]

    run(body)


def test_invalid_utf8_across_fragments_while_held_closes_with_1007(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            await client.send("kept")
            client.protocol.send_frame(Frame(Opcode.TEXT, b"ok", fin=False))
            client.protocol.send_frame(Frame(Opcode.CONT, b"\xc3", fin=True))  # truncated "é"
            client.send_data()
            async with asyncio.timeout(WAIT_S):
                await client.wait_closed()
            assert client.close_code == 1007
            assert await ws.next_message(WAIT_S) == "kept"  # what came before the bad frame stays
            with pytest.raises(EOFError):
                await ws.next_message(WAIT_S)

    run(body)


def test_a_peer_that_never_closes_after_invalid_utf8_is_cut_off(run: Runner) -> None:
    """Failing the connection leaves the TCP close to the peer; after close_timeout it is aborted."""

    async def body() -> None:
        async with direct_server(close_timeout=0.2) as peer:
            port = int(peer.url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                key = base64.b64encode(os.urandom(16)).decode()
                writer.write(
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                async with asyncio.timeout(WAIT_S):
                    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
                ws = await peer.accepted()
                ws.attach(Collector())
                writer.write(bytes([0x81, 0x82]) + b"\0\0\0\0" + b"\xff\xfe")  # masked text, bad UTF-8
                async with asyncio.timeout(WAIT_S):
                    close_frame = await reader.readexactly(4)
                assert close_frame[:2] == b"\x88\x1f" and int.from_bytes(close_frame[2:4], "big") == 1007
                # This peer neither answers the close nor closes its socket.
                async with asyncio.timeout(WAIT_S):
                    await ws.wait_closed()
            finally:
                writer.close()

    run(body)


def test_next_message_returns_held_messages_then_times_out_then_eof(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            await client.send("first")
            await client.send(b"second")
            assert await ws.next_message(WAIT_S) == "first"
            assert await ws.next_message(WAIT_S) == b"second"

            with pytest.raises(TimeoutError):
                await ws.next_message(0.05)
            assert ws.protocol.state is OPEN  # a timeout does not close anything

            # A reader already waiting is woken by the message...
            waiting = asyncio.ensure_future(ws.next_message(WAIT_S))
            await asyncio.sleep(0)
            assert not waiting.done()
            await client.send("third")
            assert await waiting == "third"

            # ...held messages outlive the close, and then it is EOF, for a waiting reader too.
            await client.send("last words")
            await client.close()
            async with asyncio.timeout(WAIT_S):
                await ws.wait_closed()
            assert await ws.next_message(WAIT_S) == "last words"
            with pytest.raises(EOFError):
                await ws.next_message(WAIT_S)

    run(body)


def test_next_message_waiting_when_the_peer_closes_raises_eof(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            waiting = asyncio.ensure_future(ws.next_message(WAIT_S))
            await asyncio.sleep(0)
            assert not waiting.done()
            await client.close(1000, "bye")
            with pytest.raises(EOFError):
                await waiting
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000

    run(body)


def test_reading_pauses_after_hold_limit_and_resumes_on_attach(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            assert ws.transport.is_reading()
            first: list[Message] = [f"m{i}" for i in range(HOLD_LIMIT)]
            for message in first:
                await client.send(message)
            await until(lambda: not ws.transport.is_reading(), "server pauses reading")

            # Sent while the server does not read: they wait in the socket, not in the held queue.
            second: list[Message] = [f"m{i}".encode() for i in range(HOLD_LIMIT, 3 * HOLD_LIMIT)]
            for message in second:
                await client.send(message)
            got = Collector()
            ws.attach(got)
            assert got.messages == first  # exactly what was read before the pause
            assert ws.transport.is_reading()
            assert await got.until(len(first) + len(second)) == first + second

    run(body)


def test_next_message_resumes_reading_once_the_held_queue_drains(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            total = 2 * HOLD_LIMIT
            for i in range(HOLD_LIMIT):
                await client.send(str(i))
            await until(lambda: not ws.transport.is_reading(), "server pauses reading")
            for i in range(HOLD_LIMIT, total):
                await client.send(str(i))
            received = [await ws.next_message(WAIT_S) for _ in range(total)]
            assert received == [str(i) for i in range(total)]
            assert ws.transport.is_reading()

    run(body)


# ---------------------------------------------------------------------- sending


def test_send_now_writes_while_open_and_reports_false_once_closed(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            client.attach(got)
            assert send_now(ws, "héllo", True) is True
            assert send_now(ws, b"\x00\xff\x10", False) is True
            assert send_now(ws, "as binary", False) is True
            assert send_now(ws, b"", False) is True
            assert await got.until(4) == ["héllo", b"\x00\xff\x10", b"as binary", b""]

            # The other way round, client to server.
            server_got = Collector()
            ws.attach(server_got)
            assert send_now(client, b"up", False) is True
            assert await server_got.until(1) == [b"up"]

            await client.close()
            async with asyncio.timeout(WAIT_S):
                await ws.wait_closed()
            assert send_now(ws, "too late", True) is False
            assert send_now(client, b"too late", False) is False
            assert got.messages == ["héllo", b"\x00\xff\x10", b"as binary", b""]

    run(body)


def _parse(wire: bytes, masked: bool) -> Frame:
    """``websockets``' own parser on one serialized frame."""
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=masked)
    try:
        next(parser)
    except StopIteration as done:
        assert not reader.buffer, "the frame has trailing bytes"
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 1280, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [True, False])
def test_frame_bytes_is_what_websockets_writes(length: int, text: bool) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    # unmasked (server side): byte for byte websockets' serialization
    reference = Frame(Opcode.TEXT if text else Opcode.BINARY, payload).serialize(mask=False)
    assert frame_bytes(payload, text, masked=False) == reference
    # masked (client side): websockets' parser unmasks it to the same frame
    wire = frame_bytes(payload, text, masked=True)
    assert wire[1] & 0x80 and len(wire) == len(reference) + 4
    frame = _parse(wire, masked=True)
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT if text else Opcode.BINARY, True, payload)


def test_mask_keys_are_fresh_and_refilled_from_the_kernel() -> None:
    keys = MaskKeys()
    taken = [keys.take() for _ in range(3 * MaskKeys.POOL_BYTES // 4)]  # three refills
    assert all(len(key) == 4 for key in taken)
    assert len(set(taken)) > len(taken) * 0.99  # 32-bit keys: collisions are rare
    keys.forget()
    assert keys.take() not in taken[-1:]


def test_a_forked_child_does_not_reuse_its_parents_mask_keys() -> None:
    from engine.io import direct

    direct.MASK_KEYS.take()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next key, to the parent
        os.write(write, direct.MASK_KEYS.take())
        os._exit(0)
    os.close(write)
    child_key = os.read(read, 4)
    os.close(read)
    os.waitpid(pid, 0)
    parent_key = direct.MASK_KEYS.take()
    assert len(child_key) == 4 and child_key != parent_key


def test_send_now_goes_through_websockets_while_a_control_frame_is_queued(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            client.attach(got)
            ws.protocol.send_ping(b"p1")  # queued in the protocol, not yet written
            assert ws.protocol.writes
            assert send_now(ws, "after the ping", True) is True
            assert not ws.protocol.writes  # both written, the ping first
            assert await got.until(1) == ["after the ping"]

    run(body)


def test_send_now_while_closing_returns_false(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            closing = asyncio.ensure_future(ws.close(1001, "going away"))
            await until(lambda: ws.protocol.state is not OPEN, "close frame sent")
            assert send_now(ws, "after close()", True) is False
            await closing
            assert client.close_code == 1001

    run(body)


def test_on_writable_reports_backpressure_and_drain(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            client.attach(got)
            client.transport.pause_reading()  # the peer stops reading: the kernel buffers fill up

            changes: list[bool] = []
            drained = asyncio.Event()

            def on_writable(writable: bool) -> None:
                changes.append(writable)
                if writable:
                    drained.set()

            ws.on_writable = on_writable
            ws.transport.set_write_buffer_limits(high=1024, low=256)
            chunk = bytes(range(256)) * 256  # 64 KiB
            sent = 0
            while not changes:  # send_now never yields, so the loop cannot drain in between
                assert sent < 1024, "64 MiB written without the transport pausing"
                assert send_now(ws, chunk, False) is True
                sent += 1
            assert changes == [False]
            assert ws.paused  # websockets' own flow-control state agrees

            assert send_now(ws, b"queued while paused", False) is True  # still accepted, buffered
            client.transport.resume_reading()
            async with asyncio.timeout(WAIT_S):
                await drained.wait()
            assert changes == [False, True]
            assert not ws.paused

            messages = await got.until(sent + 1)
            assert len(messages) == sent + 1
            assert all(m == chunk for m in messages[:sent])
            assert messages[-1] == b"queued while paused"

    run(body)


# ---------------------------------------------------------------------- not direct


def test_connections_not_switched_to_direct_behave_like_websockets(run: Runner) -> None:
    async def body() -> None:
        async def echo(ws: ServerConnection) -> None:
            assert isinstance(ws, DirectServerConnection) and not ws.direct
            with contextlib.suppress(ConnectionClosedError):  # the invalid UTF-8 at the end
                async for message in ws:
                    await ws.send(message)

        async with direct_server(direct=False, handler=echo) as peer, direct_client(peer.url) as client:
            client.direct = False  # a client used the ordinary way
            await client.send("text")
            await client.send(b"\x00bytes")
            await client.send(["frag", "ments"])
            async with asyncio.timeout(WAIT_S):
                assert await client.recv() == "text"
                assert await client.recv() == b"\x00bytes"
                assert await client.recv() == "fragments"

            for i in range(3 * HOLD_LIMIT):  # nothing is held, nothing pauses for good
                await client.send(str(i))
            echoed: list[Message] = []
            async with asyncio.timeout(WAIT_S):
                async for message in client:
                    echoed.append(message)
                    if len(echoed) == 3 * HOLD_LIMIT:
                        break
            assert echoed == [str(i) for i in range(3 * HOLD_LIMIT)]

            client.protocol.send_frame(Frame(Opcode.TEXT, b"\xff"))  # websockets' own 1007 path
            client.send_data()
            async with asyncio.timeout(WAIT_S):
                await client.wait_closed()
            assert client.close_code == 1007

    run(body)


# ---------------------------------------------------------------------- large reads in slices


def _burst(client: ClientConnection, messages: list[str]) -> None:
    """Queue every frame, then write them in one go, so the server reads them in few large reads."""
    for message in messages:
        client.protocol.send_text(message.encode())
    client.transport.write(b"".join(client.protocol.data_to_send()))


def test_a_large_read_is_parsed_in_slices_between_other_callbacks(run: Runner) -> None:
    """A burst (an AI sending seconds of audio at once) must not hold the event loop for its
    whole length: something scheduled at its first message runs before its last is parsed."""

    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            loop = asyncio.get_running_loop()
            delivered_when_other_work_ran: list[int] = []
            got = Collector()

            def on_message(message: Message) -> None:
                if not got.messages:
                    loop.call_soon(lambda: delivered_when_other_work_ran.append(len(got.messages)))
                got(message)

            ws.attach(on_message)
            burst = [f"{i:04d}" + "x" * 1300 for i in range(200)]  # ~1.3 kB each, like 24 kHz pcm16 JSON
            _burst(client, burst)
            assert await got.until(len(burst)) == burst  # all of it, in order
            per_slice = SLICE_BYTES // 1300 + 1
            assert delivered_when_other_work_ran and delivered_when_other_work_ran[0] <= per_slice
            await until(lambda: ws.transport.is_reading(), "reading resumes after the last slice")
            await client.send("after")
            assert (await got.until(len(burst) + 1))[-1] == "after"

    run(body)


def test_a_connection_lost_in_the_middle_of_a_large_read_stops_cleanly(run: Runner) -> None:
    async def body() -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()

            def on_message(message: Message) -> None:
                got(message)
                if len(got.messages) == 1:
                    ws.transport.abort()  # the peer vanishes while most of the burst is unparsed

            ws.attach(on_message)
            _burst(client, [f"{i:04d}" + "y" * 1300 for i in range(200)])
            await ws.wait_closed()
            await asyncio.sleep(0)  # any slice still scheduled runs now
            assert 1 <= len(got.messages) < 200
            first = got.messages[0]
            assert isinstance(first, str) and first.startswith("0000")
        assert errors == []

    run(body)


# ---------------------------------------------------------------------- whole frames skip websockets' parser


def _wire(client: ClientConnection, frames: list[Frame]) -> bytes:
    """The bytes ``websockets`` would write for these frames (masked: a client's)."""
    for frame in frames:
        client.protocol.send_frame(frame)
    return b"".join(client.protocol.data_to_send())


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 130, 1000])
def test_frames_cut_anywhere_arrive_whole_and_in_order_with_control_frames_between(run: Runner, piece: int) -> None:
    """Reads split frames at every possible byte: headers, 16-bit lengths, masks, payloads. Pings
    and a fragmented message in between go to websockets, whose parser must stay in step."""

    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            ws.attach(got)
            await barrier(client)  # the parser now waits between frames
            pong = await client.ping(b"before")  # answered: the server's pong comes back
            frames = [
                Frame(Opcode.TEXT, "short ü".encode()),
                Frame(Opcode.BINARY, bytes(range(200))),  # 16-bit length
                Frame(Opcode.PING, b"between"),
                Frame(Opcode.TEXT, b"x" * 70_000),  # 64-bit length
                Frame(Opcode.TEXT, b"frag", fin=False),
                Frame(Opcode.CONT, b"mented", fin=True),
                Frame(Opcode.BINARY, b""),
                Frame(Opcode.TEXT, b"last"),
            ]
            wire = _wire(client, frames)
            for at in range(0, len(wire), piece):
                client.transport.write(wire[at : at + piece])
                if at % (piece * 64) == 0:
                    await asyncio.sleep(0)  # separate reads
            expected = ["short ü", bytes(range(200)), "x" * 70_000, "fragmented", b"", "last"]
            assert await got.until(6) == expected
            async with asyncio.timeout(WAIT_S):
                await pong
            await barrier(client)  # and websockets still answers pings after all that
            assert got.messages == expected
            assert ws._aligned  # the fast path was in use

    run(body)


def test_a_whole_frame_over_max_size_closes_with_1009(run: Runner) -> None:
    async def body() -> None:
        async with direct_server(max_size=1000) as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            ws.attach(got)
            await client.send("fits")
            await barrier(client)
            client.transport.write(_wire(client, [Frame(Opcode.TEXT, b"y" * 1001)]))
            async with asyncio.timeout(WAIT_S):
                await ws.wait_closed()
            assert got.messages == ["fits"]
            assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1009

    run(body)


def test_an_unmasked_frame_from_a_client_is_a_protocol_error(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            ws.attach(got)
            await barrier(client)
            client.transport.write(frame_bytes(b"not masked", True, masked=False))
            async with asyncio.timeout(WAIT_S):
                await ws.wait_closed()
            assert got.messages == []
            assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1002

    run(body)


def test_messages_after_a_close_frame_in_the_same_read_are_left_to_websockets(run: Runner) -> None:
    async def body() -> None:
        async with direct_server() as peer, direct_client(peer.url) as client:
            ws = await peer.accepted()
            got = Collector()
            ws.attach(got)
            await barrier(client)
            client.protocol.send_text(b"before")
            client.protocol.send_close(1000, "bye")
            client.transport.write(b"".join(client.protocol.data_to_send()) + frame_bytes(b"after", True, True))
            async with asyncio.timeout(WAIT_S):
                await ws.wait_closed()
            assert got.messages == ["before"]  # RFC 6455 5.5.1: nothing after a close frame
            assert ws.close_code == 1000

    run(body)
