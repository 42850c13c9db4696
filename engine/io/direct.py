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
  leg while the other one's write buffer is over its limit (backpressure without awaiting);
* a large read is parsed in slices of :data:`SLICE_BYTES`, one slice per event-loop turn, so a
  peer that sends seconds of audio at once (AI providers talk faster than real time) cannot hold
  up another call's barge-in for the whole burst.

A connection that is not switched to direct mode (``direct = False``, e.g. the embedded echo AI)
behaves exactly like its ``websockets`` base class.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode, apply_mask
from websockets.protocol import CLIENT, OPEN, SERVER
from websockets.streams import StreamReader

OP_TEXT, OP_BINARY, OP_CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
#: a read larger than this is parsed in slices, one per event-loop turn (a 24 kHz pcm16 frame in
#: JSON is ~1.3 kB, so a slice is a few frames: some tens of microseconds of work)
SLICE_BYTES = 4096
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
        if self._backlog:  # (reading is paused meanwhile; kept in order should a read slip in)
            self._backlog += data
            return
        if self.on_message is None or len(data) <= SLICE_BYTES:
            self._feed(data)
            return
        self._backlog = bytearray(data)
        self._next_slice()

    def _next_slice(self) -> None:
        backlog = self._backlog
        if not backlog:
            return  # the connection was lost meanwhile
        piece = bytes(backlog[:SLICE_BYTES])
        del backlog[:SLICE_BYTES]
        self._feed(piece)
        if backlog:
            self.pause_reading_for("backlog")
            self.loop.call_soon(self._next_slice)
        else:
            self.resume_reading_for("backlog")

    # ------------------------------------------------------------------ whole frames

    def _feed(self, data: bytes) -> None:
        """Parse ``data``: whole unfragmented text and binary frames here, everything else by
        ``websockets``, in order.

        ``websockets`` parses each frame through a chain of generators, a stream buffer and a
        ``Frame`` object, about as much work as the call core spends on the frame. Here a data
        frame is checked exactly as ``websockets`` checks it (no reserved bits, masked by a
        client and only by a client, within ``max_size``, no fragmented message under way,
        connection open, no extensions), unmasked and delivered. Anything else (control
        frames, fragments, a frame ``websockets`` would reject) is handed to ``websockets``
        whole, so its parser is always left at a frame boundary; the tail of a frame still
        arriving waits in ``_partial`` (at most ``max_size``, as ``websockets`` would buffer).
        """
        protocol = self.protocol
        if not self._aligned and not self._align():
            super().data_received(data)  # type: ignore[misc]
            return
        partial = self._partial
        if partial:
            partial += data
            buf: bytes | bytearray = partial
        else:
            buf = data
        size = len(buf)
        at = 0
        from_client = protocol.side is SERVER
        while size - at >= 2:
            head1, head2 = buf[at], buf[at + 1]
            length = head2 & 0x7F
            start = at + 2
            if length == 126:
                if size - start < 2:
                    break
                length = int.from_bytes(buf[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(buf[start : start + 8], "big")
                start += 8
            masked = head2 & 0x80
            if masked:
                start += 4
            end = start + length
            fast = (
                head1 in (_FIN_TEXT, _FIN_BINARY)
                and bool(masked) == from_client
                and protocol.state is OPEN
                and protocol.current_size is None
                and not protocol.extensions
                and not self._failed
                and (protocol.max_message_size is None or length <= protocol.max_message_size)
                and (protocol.max_fragment_size is None or length <= protocol.max_fragment_size)
            )
            if not fast and (protocol.state is not OPEN or length > (protocol.max_message_size or length)):
                # closing, or a frame websockets will refuse at its header: let it see the rest
                self._partial = bytearray()
                self._aligned = False
                super().data_received(bytes(buf[at:]))  # type: ignore[misc]
                return
            if end > size:
                break
            if fast:
                payload = apply_mask(buf[start:end], bytes(buf[start - 4 : start])) if masked else bytes(buf[start:end])
                if head1 == _FIN_TEXT:
                    try:
                        message: Message = payload.decode()
                    except UnicodeDecodeError:  # websockets' way, which fails the connection
                        super().data_received(bytes(buf[at:end]))  # type: ignore[misc]
                        at = end
                        continue
                else:
                    message = payload
                self._deliver(message)
            else:
                super().data_received(bytes(buf[at:end]))  # type: ignore[misc]
            at = end
        if partial:  # it was the buffer: keep its unparsed end
            del partial[:at]
        elif at < size:  # (partial is self._partial, empty until now)
            partial += buf[at:]

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
        if reason in self._pausers:
            self._pausers.discard(reason)
            if not self._pausers and not self.transport.is_closing():
                self.transport.resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        callback = self.on_writable
        if callback is not None:
            callback(False)

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        callback = self.on_writable
        if callback is not None:
            callback(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._backlog.clear()
        self._partial.clear()
        super().connection_lost(exc)  # type: ignore[misc]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DirectServerConnection(DirectDelivery, ServerConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()

    def process_event(self, event: Any) -> None:
        if self.direct and self.request is not None and self._direct_event(event):
            return
        super().process_event(event)


class DirectClientConnection(DirectDelivery, ClientConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_init()
        self.direct = True  # a bridge's AI leg: held until the bridge attaches

    def process_event(self, event: Any) -> None:
        if self.direct and self.response is not None and self._direct_event(event):
            return
        super().process_event(event)


def send_now(ws: ServerConnection | ClientConnection, data: Message, text: bool) -> bool:
    """Write one message now, without awaiting (``websockets.broadcast`` does the same).

    Returns False when the connection is no longer open (its reader reports the close). A
    write error aborts the connection, as ``websockets`` does in ``send``.

    A whole message on a connection without extensions and with nothing else queued is framed
    here (:func:`frame_bytes`) and written in one call; anything else goes through
    ``websockets``' protocol object, which also keeps the order of queued control frames.
    """
    protocol = ws.protocol
    if protocol.state is not OPEN:
        return False
    payload = data.encode() if type(data) is str else data
    assert isinstance(payload, bytes)
    try:
        if not frames_directly(protocol):
            if text:
                protocol.send_text(payload)
            else:
                protocol.send_binary(payload)
            ws.send_data()
        else:
            ws.transport.write(frame_bytes(payload, text, protocol.side is CLIENT))
    except Exception as exc:  # OSError, or RuntimeError from uvloop on a closing transport
        ws.set_connection_exc(exc)
        ws.transport.abort()
        return False
    return True


def frames_directly(protocol: Any) -> bool:
    """Whether a whole message may be framed here (:func:`frame_bytes`) and written as it is:
    nothing queued in ``websockets``' protocol, no extensions, no fragmented message under way."""
    return not (protocol.writes or protocol.extensions or protocol.expect_continuation_frame)


_AT_EOF = StreamReader.at_eof.__code__  # where websockets' parser waits between frames
_HEAD_SHORT, _HEAD_16, _HEAD_64 = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")
_FIN_TEXT, _FIN_BINARY = 0x80 | OP_TEXT, 0x80 | OP_BINARY


def frame_bytes(payload: bytes, text: bool, masked: bool) -> bytes:
    """One final (unfragmented) text or binary frame, RFC 6455 section 5.2; a client's is masked
    with a key from :class:`MaskKeys`. Byte for byte what ``websockets`` writes for it."""
    head1 = _FIN_TEXT if text else _FIN_BINARY
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = _HEAD_SHORT.pack(head1, mask_bit | length)
    elif length < 65536:
        head = _HEAD_16.pack(head1, mask_bit | 126, length)
    else:
        head = _HEAD_64.pack(head1, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = MASK_KEYS.take()
    return head + key + apply_mask(payload, key)


class MaskKeys:
    """Client masking keys, 4 bytes each, cut from one ``os.urandom`` read of :data:`POOL_BYTES`.

    RFC 6455 asks for keys from a strong source of entropy that the application cannot predict;
    the kernel's CSPRNG is that source whether it is read 4 bytes at a time (``websockets``: one
    ``getrandom`` system call per frame, 4% of a loaded server's time) or 4 kB at a time.
    """

    POOL_BYTES = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        at = self._at
        if at + 4 > len(self._pool):
            self._pool, at = os.urandom(self.POOL_BYTES), 0
        self._at = at + 4
        return self._pool[at : at + 4]

    def forget(self) -> None:
        """Drop the pool (a forked child must not reuse its parent's keys)."""
        self._pool, self._at = b"", 0


MASK_KEYS = MaskKeys()
os.register_at_fork(after_in_child=MASK_KEYS.forget)
