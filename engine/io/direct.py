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
* ``on_writable`` reports the transport's flow control, so a bridge can stop reading from one
  leg while the other one's write buffer is over its limit (backpressure without awaiting).

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

OP_TEXT, OP_BINARY, OP_CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
Message = str | bytes
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
        self._held_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._failed = False  # failed for invalid UTF-8: nothing more is read from the peer

    # ------------------------------------------------------------------ receiving

    def attach(self, on_message: Callable[[Message], None]) -> None:
        """Deliver held messages, then every later one, to ``on_message``."""
        self.direct = True
        while self._held:
            on_message(self._held.popleft())
        self.on_message = on_message
        if self._held_paused:
            self._held_paused = False
            self.transport.resume_reading()

    async def next_message(self, timeout: float) -> Message:
        """The next message, for the rare reader that must wait for one before attaching (the
        ``auto`` route's detection). Raises ``TimeoutError``, or ``EOFError`` once closed."""
        deadline = self.loop.time() + timeout
        while not self._held:
            if self.protocol.state is not OPEN:
                raise EOFError
            self._waiter = self.loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._waiter
            finally:
                self._waiter = None
        message = self._held.popleft()
        if self._held_paused and len(self._held) < HOLD_LIMIT // 2:
            self._held_paused = False
            self.transport.resume_reading()
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
        callback = self.on_message
        if callback is not None:
            callback(message)
            return True
        self._held.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._held) >= HOLD_LIMIT and not self._held_paused:
            self._held_paused = True
            self.transport.pause_reading()
        return True

    def _flush_protocol(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def _abort_if_open(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    def _wake_on_close(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ flow control

    def _writable_changed(self, writable: bool) -> None:
        callback = self.on_writable
        if callback is not None:
            callback(writable)


class DirectServerConnection(DirectDelivery, ServerConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()

    def process_event(self, event: Any) -> None:
        if self.direct and self.request is not None and self._direct_event(event):
            return
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_on_close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writable_changed(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writable_changed(True)


class DirectClientConnection(DirectDelivery, ClientConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()
        self.direct = True  # a bridge's AI leg: held until the bridge attaches

    def process_event(self, event: Any) -> None:
        if self.direct and self.response is not None and self._direct_event(event):
            return
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake_on_close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._writable_changed(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._writable_changed(True)


def send_now(ws: ServerConnection | ClientConnection, data: Message, text: bool) -> bool:
    """Write one message now, without awaiting (``websockets.broadcast`` does the same).

    Returns False when the connection is no longer open (its reader reports the close). A
    write error aborts the connection, as ``websockets`` does in ``send``.
    """
    protocol = ws.protocol
    if protocol.state is not OPEN:
        return False
    payload = data.encode() if type(data) is str else data
    assert isinstance(payload, bytes)
    if text:
        protocol.send_text(payload)
    else:
        protocol.send_binary(payload)
    try:
        ws.send_data()
    except Exception as exc:  # OSError, or RuntimeError from uvloop on a closing transport
        ws.set_connection_exc(exc)
        ws.transport.abort()
        return False
    return True
