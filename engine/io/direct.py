"""WebSocket connections that hand each message to a callback as it is parsed.

``websockets``' asyncio API delivers a message through a queue, a future and a task switch
(``async for``), and sends one through a coroutine with its own context manager: a few tens of
microseconds per message, four messages per 20 ms of a bridged call. A bridge has nothing to
await between a frame arriving and the frames it causes (the core is synchronous), so callbridge
keeps ``websockets`` for the handshake, pings and the closing handshake, and moves the data
messages off the asyncio layer:

* :class:`DirectServerConnection` / :class:`DirectClientConnection` deliver every complete data
  message, in order, to ``on_message`` from inside ``data_received`` (before a callback is
  attached they are held, and reading pauses once a few are waiting);
* :func:`send_now` writes a message synchronously, as ``websockets.broadcast`` does;
* the per-message work (frame parsing, framing, masking) is in :mod:`engine.io.wire`, plain
  functions that ``make native`` compiles (these classes, with several ``websockets`` bases,
  cannot be);
* ``on_writable`` reports the transport's flow control, so a bridge can stop reading from one
  leg while the other one's write buffer is over its limit (backpressure without awaiting);
* a large read is parsed in slices of :data:`SLICE_BYTES`, one slice per event-loop turn, so a
  peer that sends seconds of audio at once (AI providers talk faster than real time) cannot hold
  up another call's barge-in for the whole burst.

A connection that is not switched to direct mode (``direct = False``, e.g. the embedded echo AI)
behaves exactly like its ``websockets`` base class.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN
from websockets.streams import StreamReader

from engine.errors import LegClosed
from engine.io.tls import is_client_hello

# The per-message functions live in engine.io.wire (compiled with mypyc); re-exported here.
from engine.io.wire import MASK_KEYS, MaskKeys, Message, feed, frame_bytes, frames_directly, send_now

__all__ = [
    "MASK_KEYS",
    "SLICE_BYTES",
    "DirectClientConnection",
    "DirectDelivery",
    "DirectServerConnection",
    "MaskKeys",
    "Message",
    "frame_bytes",
    "frames_directly",
    "send_now",
]

OP_TEXT, OP_BINARY, OP_CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
#: a read larger than this is parsed in slices, one per event-loop turn (a 24 kHz pcm16 frame in
#: JSON is ~1.3 kB, so a slice is a few frames: some tens of microseconds of work)
SLICE_BYTES = 4096
#: messages held before a callback is attached, after which reading pauses
HOLD_LIMIT = 32


class DirectDelivery:
    """Mixin over a ``websockets`` asyncio connection (see the module docstring)."""

    # Attributes of the websockets Connection this mixin is combined with.
    protocol: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    paused: bool
    close_timeout: float | None

    def _direct_init(self) -> None:
        self.direct = False
        self.on_message: Callable[[Message], None] | None = None
        self.on_writable: Callable[[bool], None] | None = None
        self._held: deque[Message] = deque()
        self._pausers: set[str] = set()  # why reading is paused: "held", "backlog", a bridge's reason
        self._backlog = bytearray()  # the unparsed rest of a large read
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._failed = False  # failed for invalid UTF-8: nothing more is read from the peer
        self._partial = bytearray()  # the start of a frame whose end has not arrived yet
        self._aligned = False  # websockets' parser waits at a frame boundary: whole frames may skip it

    # ------------------------------------------------------------------ receiving

    def attach(self, on_message: Callable[[Message], None]) -> None:
        """Deliver held messages, then every later one, to ``on_message``."""
        self.direct = True
        while self._held:
            on_message(self._held.popleft())
        self.on_message = on_message
        self.resume_reading_for("held")

    def detach(self) -> None:
        """Forget the callbacks once the call is over: a late message is dropped, and the
        connection no longer holds its bridge (a reference cycle that only a full garbage
        collection would free, stalling every live call while it runs)."""
        self.on_message = _drop
        self.on_writable = None

    async def next_message(self, timeout: float) -> Message:
        """The next message, for the rare reader that must wait for one before attaching (the
        ``auto`` route's detection). Raises ``TimeoutError``, or :exc:`~engine.errors.LegClosed` once closed."""
        deadline = self.loop.time() + timeout
        while not self._held:
            if self.protocol.state is not OPEN:
                raise LegClosed
            self._waiter = self.loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._waiter
            finally:
                self._waiter = None
        message = self._held.popleft()
        if len(self._held) < HOLD_LIMIT // 2:
            self.resume_reading_for("held")
        return message

    def _direct_event(self, event: Frame) -> bool:
        """Handle a frame in direct mode; False: not ours (the base class takes it)."""
        opcode = event.opcode
        if self._failed:  # frames parsed in the same read as the bad one (RFC 6455 7.1.7)
            return opcode is OP_TEXT or opcode is OP_BINARY or opcode is OP_CONT
        if opcode is OP_TEXT or opcode is OP_BINARY:
            if not event.fin:
                self._fragments = [bytes(event.data)]
                self._fragment_text = opcode is OP_TEXT
                return True
            data = bytes(event.data)
            text = opcode is OP_TEXT
        elif opcode is OP_CONT:
            self._fragments.append(bytes(event.data))
            if not event.fin:
                return True
            data, text = b"".join(self._fragments), self._fragment_text
            self._fragments = []
        else:
            return False  # ping, pong, close: the base class (and the sans-I/O protocol) handle them
        if text:
            try:
                message: Message = data.decode()
            except UnicodeDecodeError:
                self._failed = True
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                self._flush_protocol()
                # As websockets does when it fails a connection: the peer has close_timeout to
                # close the TCP connection, then it is aborted (else it stays open for good).
                if self.close_timeout is not None:
                    self.loop.call_later(self.close_timeout, self._abort_if_open)
                return True
        else:
            message = data
        self._deliver(message)
        return True

    def _deliver(self, message: Message) -> None:
        callback = self.on_message
        if callback is not None:
            callback(message)
            return
        self._held.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._held) >= HOLD_LIMIT:
            self.pause_reading_for("held")

    def _flush_protocol(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _abort_if_open(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    # ------------------------------------------------------------------ reading in slices

    def data_received(self, data: bytes) -> None:
        """Called by asyncio with bytes from the socket: parse them now, or in slices of
        :data:`SLICE_BYTES` over several loop turns when the read is larger."""
        if self._backlog:  # (reading is paused meanwhile; kept in order should a read slip in)
            self._backlog += data
            return
        if self.on_message is None or len(data) <= SLICE_BYTES:
            feed(self, data)
            return
        self._backlog = bytearray(data)
        self._next_slice()

    def _next_slice(self) -> None:
        backlog = self._backlog
        if not backlog:
            return  # the connection was lost meanwhile
        piece = bytes(backlog[:SLICE_BYTES])
        del backlog[:SLICE_BYTES]
        feed(self, piece)
        if backlog:
            self.pause_reading_for("backlog")
            self.loop.call_soon(self._next_slice)
        else:
            self.resume_reading_for("backlog")

    # ------------------------------------------------------------------ whole frames

    def _hand_over(self, data: bytes) -> None:
        """Frames that are not a whole data message, for ``websockets``' own parser."""
        super().data_received(data)  # type: ignore[misc]

    def _align(self) -> bool:
        """Whether ``websockets``' parser waits for the next frame with nothing buffered (once it
        does, it is only ever given whole frames, so it stays that way)."""
        protocol = self.protocol
        if not self.direct or protocol.state is not OPEN or protocol.reader.buffer or protocol.extensions:
            return False
        waiting = protocol.parser
        while getattr(waiting, "gi_yieldfrom", None) is not None:
            waiting = waiting.gi_yieldfrom
        self._aligned = getattr(waiting, "gi_code", None) is _AT_EOF
        return self._aligned

    # ------------------------------------------------------------------ flow control

    def pause_reading_for(self, reason: str) -> None:
        """Stop reading from the socket until every reason given here is withdrawn."""
        if not self._pausers and not self.transport.is_closing():
            self.transport.pause_reading()
        self._pausers.add(reason)

    def resume_reading_for(self, reason: str) -> None:
        """Withdraw a reason given to :meth:`pause_reading_for`; reading resumes when none is left."""
        if reason in self._pausers:
            self._pausers.discard(reason)
            if not self._pausers and not self.transport.is_closing():
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        """Called by asyncio when the write buffer is over its high mark; tells ``on_writable``."""
        super().pause_writing()  # type: ignore[misc]
        callback = self.on_writable
        if callback is not None:
            callback(False)

    def resume_writing(self) -> None:
        """Called by asyncio when the write buffer drained below its low mark; tells ``on_writable``."""
        super().resume_writing()  # type: ignore[misc]
        callback = self.on_writable
        if callback is not None:
            callback(True)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio once the socket is gone: drops unparsed bytes and wakes a
        :meth:`next_message` waiting for a message that will not come."""
        self._backlog.clear()
        self._partial.clear()
        super().connection_lost(exc)  # type: ignore[misc]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DirectServerConnection(DirectDelivery, ServerConnection):
    """A platform's connection to callbridge: give it to ``websockets.serve`` as
    ``create_connection``; messages are held until a bridge :meth:`~DirectDelivery.attach` es."""

    #: set on a plain listener's connections: called with the connection when its first bytes
    #: are a TLS ClientHello (a wss:// client at a ws:// port), which is then dropped
    on_tls_hello: Callable[[DirectServerConnection], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()
        self._first_read = True

    def data_received(self, data: bytes) -> None:
        """As :meth:`DirectDelivery.data_received`; a TLS ClientHello as the first bytes goes to
        :attr:`on_tls_hello` instead of failing as an unreadable HTTP request."""
        if self._first_read:
            self._first_read = False
            if self.on_tls_hello is not None and is_client_hello(data):
                self.on_tls_hello(self)
                self.transport.abort()
                return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """As :meth:`DirectDelivery.connection_lost`, and frees what ``serve()`` left behind."""
        super().connection_lost(exc)
        # websockets' serve() gives the protocol a closure over this connection for
        # select_subprotocol, a cycle; the handshake is long over, so the closure goes.
        vars(self.protocol).pop("select_subprotocol", None)

    def process_event(self, event: Any) -> None:
        """``websockets``' hook for each parsed frame: data messages go to ``on_message`` once the
        handshake is done, everything else (pings, close) to ``websockets``."""
        if self.direct and self.request is not None and self._direct_event(event):
            return
        super().process_event(event)


class DirectClientConnection(DirectDelivery, ClientConnection):
    """callbridge's connection to an AI backend: give it to ``websockets.connect`` as
    ``create_connection``; in direct mode from the start, its messages held until the bridge
    attaches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()
        self.direct = True  # a bridge's AI leg: held until the bridge attaches

    def process_event(self, event: Any) -> None:
        """As :meth:`DirectServerConnection.process_event`, once the upgrade response is in."""
        if self.direct and self.response is not None and self._direct_event(event):
            return
        super().process_event(event)


def _drop(message: Message) -> None:
    """A detached connection's ``on_message``: the call is over."""


_AT_EOF = StreamReader.at_eof.__code__  # where websockets' parser waits between frames
