"""The per-message work of :mod:`engine.io.direct`, in plain functions mypyc can compile.

:mod:`engine.io.direct` extends ``websockets``' connection classes, which mypyc cannot compile
(several Python bases); what it does for every message lives here instead:

* :func:`feed`: one read of a direct connection (what its ``data_received`` does);
* :func:`deliver_frames`: parse the whole data frames of one read and hand each message over;
* :func:`send_now`: write one message at once, framed by :func:`frame_bytes`;
* :class:`MaskKeys`: a client's masking keys, from a pooled ``os.urandom`` read.
"""

from __future__ import annotations

import os
import struct
from typing import Any, ClassVar

from websockets.frames import Opcode, apply_mask
from websockets.protocol import CLIENT, OPEN, SERVER

Message = str | bytes

FIN_TEXT: int = 0x80 | Opcode.TEXT.value
FIN_BINARY: int = 0x80 | Opcode.BINARY.value
_HEAD_SHORT, _HEAD_16, _HEAD_64 = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


def feed(conn: Any, data: bytes) -> None:
    """Parse one read of ``conn`` (a :class:`engine.io.direct.DirectDelivery`): whole
    unfragmented data frames by :func:`deliver_frames`, anything else whole by ``websockets``, in
    order, so its parser is always left at a frame boundary. The tail of a frame still arriving
    waits in ``conn._partial`` (at most ``max_size``, as ``websockets`` would buffer).
    ``websockets`` would parse each frame through a chain of generators, a stream buffer and a
    ``Frame`` object, about as much work as the call core spends on the frame."""
    if not conn._aligned and not conn._align():
        conn._hand_over(data)
        return
    partial: bytearray = conn._partial
    buf: bytes | bytearray = data
    if partial:
        partial += data
        buf = partial
    at = deliver_frames(conn, buf)
    if at < 0:  # closing, or a frame websockets will refuse: it has seen the rest
        conn._partial = bytearray()
        conn._aligned = False
    elif partial:  # it was the buffer: keep its unparsed end
        del partial[:at]
    elif at < len(buf):  # (partial is conn._partial, empty until now)
        partial += buf[at:]


def deliver_frames(conn: Any, buf: bytes | bytearray) -> int:
    """Deliver the whole unfragmented text and binary frames at the start of ``buf`` to
    ``conn.on_message`` (``conn._deliver`` until one is attached); anything else goes whole to
    ``conn._hand_over`` (``websockets``' parser), in order. Returns how many bytes were used
    (the rest is the start of a frame still arriving), or -1 when the rest of ``buf`` went to
    ``websockets`` for good (closing, or a frame it will refuse at its header).

    A data frame is checked exactly as ``websockets`` checks it: no reserved bits, masked by a
    client and only by a client, within ``max_size``, no fragmented message under way,
    connection open, no extensions; text must be UTF-8 (else ``websockets`` fails the
    connection, its way).
    """
    protocol = conn.protocol
    from_client = protocol.side is SERVER
    max_message = protocol.max_message_size
    max_fragment = protocol.max_fragment_size
    size = len(buf)
    at = 0
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
        masked = head2 & 0x80 != 0
        if masked:
            start += 4
        end = start + length
        is_open = protocol.state is OPEN
        fast = (
            head1 in (FIN_TEXT, FIN_BINARY)
            and masked == from_client
            and is_open
            and protocol.current_size is None
            and not protocol.extensions
            and not conn._failed
            and (max_message is None or length <= max_message)
            and (max_fragment is None or length <= max_fragment)
        )
        if not fast and (not is_open or length > (max_message or length)):
            conn._hand_over(bytes(buf[at:]))
            return -1
        if end > size:
            break
        if fast:
            payload = apply_mask(buf[start:end], bytes(buf[start - 4 : start])) if masked else bytes(buf[start:end])
            message: Message = payload
            if head1 == FIN_TEXT:
                try:
                    message = payload.decode()
                except UnicodeDecodeError:  # websockets' way, which fails the connection
                    conn._hand_over(bytes(buf[at:end]))
                    at = end
                    continue
            callback = conn.on_message
            (callback if callback is not None else conn._deliver)(message)
        else:
            conn._hand_over(bytes(buf[at:end]))
        at = end
    return at


def send_now(ws: Any, data: Message, text: bool) -> bool:
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
    payload = data.encode() if isinstance(data, str) else data
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


def frame_bytes(payload: bytes, text: bool, masked: bool) -> bytes:
    """One final (unfragmented) text or binary frame, RFC 6455 section 5.2; a client's is masked
    with a key from :class:`MaskKeys`. Byte for byte what ``websockets`` writes for it."""
    head1 = FIN_TEXT if text else FIN_BINARY
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head: bytes = _HEAD_SHORT.pack(head1, mask_bit | length)
    elif length < 65536:
        head = _HEAD_16.pack(head1, mask_bit | 126, length)
    else:
        head = _HEAD_64.pack(head1, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = MASK_KEYS.take()
    masked_payload: bytes = apply_mask(payload, key)
    return head + key + masked_payload


class MaskKeys:
    """Client masking keys, 4 bytes each, cut from one ``os.urandom`` read of :data:`POOL_BYTES`.

    RFC 6455 asks for keys from a strong source of entropy that the application cannot predict;
    the kernel's CSPRNG is that source whether it is read 4 bytes at a time (``websockets``: one
    ``getrandom`` system call per frame, 4% of a loaded server's time) or 4 kB at a time.
    """

    POOL_BYTES: ClassVar[int] = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        """The next 4-byte masking key, for one client frame; never reuse it for another."""
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
