"""Run a load-test process's main coroutine on uvloop when installed (as callbridge does)."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import socket
import struct
import termios
import time
from collections.abc import Coroutine
from typing import Any

from websockets.protocol import CLIENT, OPEN

from engine.io.direct import SLICE_BYTES, frame_bytes, frames_directly, send_now


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, numpy, websockets) out of the collector's sight, as
    ``callbridge serve`` does: a full collection then walks only what the run itself keeps."""
    gc.collect()
    gc.freeze()


class Stamps:
    """``[time, payload bytes]`` per message, kept as two flat lists of numbers: nothing per frame
    for the garbage collector to track (per-frame lists made full collections of 10-30 ms stall
    the harness mid-step)."""

    __slots__ = ("sizes", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.sizes: list[int] = []

    def add(self, time: float, size: int) -> None:
        self.times.append(time)
        self.sizes.append(size)

    def pairs(self) -> list[tuple[float, int]]:
        return list(zip(self.times, self.sizes, strict=True))


#: Linux's SO_TIMESTAMPNS (``socket`` does not export it): the kernel stamps each received
#: segment with CLOCK_REALTIME, handed back by ``recvmsg`` as ancillary data
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
#: Linux's SO_TIMESTAMPING and three of its flags (linux/net_tstamp.h): a send can ask the
#: kernel to stamp the moment its data leaves for the network, reported on the error queue
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
_TIMESPECS3 = struct.Struct("@qqqqqq")  # scm_timestamping: software, (deprecated), hardware
_TX_REQUEST = [(socket.SOL_SOCKET, SO_TIMESTAMPING, struct.pack("@I", SOF_TIMESTAMPING_TX_SOFTWARE))]
_ERRQUEUE_ANC = socket.CMSG_SPACE(_TIMESPECS3.size) + socket.CMSG_SPACE(64)  # + sock_extended_err
#: at most this much per read: one slice of engine.io.direct, so no read pauses and resumes the
#: transport (which would then read past this reader, with no timestamp)
READ_BYTES = SLICE_BYTES


def _unsent(sock: socket.socket) -> bool:
    """Whether the socket still holds data it has not sent, or that was not acknowledged
    (SIOCOUTQ); True when that cannot be told."""
    try:
        return bool(struct.unpack("@i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except OSError:
        return True


class KernelReceive:
    """Read one WebSocket connection with ``recvmsg`` and keep the kernel's receive time.

    A harness process that is itself waiting for a CPU would otherwise add its own scheduling
    delay to every latency it measures, and on 2 shared cores that delay (2-4 ms) is the larger
    part of a p99: the arrival times recorded are when the data reached the socket, which is when
    a real platform or AI provider would have it. :attr:`rx` is that time, on ``time.monotonic``'s
    clock, for the data being delivered now; ``app`` is when the harness got to it.

    How: the transport stops reading; a reader on a duplicate of the socket's descriptor reads
    with ``recvmsg`` and feeds the connection exactly what the transport would have. At EOF or a
    read error the transport takes over again, so it sees the close as usual. Where the kernel
    gives no timestamp, :attr:`rx` is the application's time (and :attr:`kernel` says so).
    Messages read together carry the stamp of the last segment read: later, never earlier.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.rx = self.app = time.monotonic()
        self.kernel = False
        self.tx_capable = False
        self.tx_stamped = 0  # sends that got the kernel's stamp (send_stamped)
        self._tx_late = False
        sock = ws.transport.get_extra_info("socket")
        self._sock: socket.socket | None = None
        if sock is None or ws.transport.is_closing():
            return
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
            dup.setblocking(False)
            dup.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            return
        self._sock = dup
        self.kernel = True
        try:  # report software stamps (sent ones only when a send asks: send_stamped)
            dup.setsockopt(
                socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY
            )
            self.tx_capable = True
        except OSError:
            self.tx_capable = False
        # (with SO_TIMESTAMPING on, a read also carries an scm_timestamping: room for both)
        self._anc = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_TIMESPECS3.size)
        ws.transport.pause_reading()
        self.loop.add_reader(dup.fileno(), self._readable)
        closed = asyncio.ensure_future(ws.wait_closed())
        closed.add_done_callback(lambda _: self.stop())

    def send_stamped(self, payload: bytes, text: bool) -> tuple[bool, float]:
        """Write one whole message now and say when it left: ``(written, time)``.

        The time is the kernel's stamp of the moment the data went to the network (loopback:
        the same instant the receiver's socket gets it), on ``time.monotonic``'s clock; so the
        sender's own wait for a CPU between deciding to send and writing is not counted, as
        the receive stamps leave out the receiver's. Where the kernel gives no stamp at once
        (or the message must queue behind others), the write goes through :func:`send_now` and
        the time is taken just before it: later figures, never earlier ones."""
        before = time.monotonic()
        sock, ws = self._sock, self.ws
        protocol = ws.protocol
        if (
            sock is None
            or not self.tx_capable
            or _unsent(sock)  # the stamp would come later, and a late one on the error queue
            # makes the event loop drop this reader (libuv stops a poll handle on POLLERR)
            or protocol.state is not OPEN
            or not frames_directly(protocol)
            or ws.transport.get_write_buffer_size()
        ):
            return send_now(ws, payload, text), before
        frame = frame_bytes(payload, text, protocol.side is CLIENT)
        try:
            written = sock.sendmsg([frame], _TX_REQUEST)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            return send_now(ws, payload, text), before  # the transport meets the error and reports it
        if written < len(frame):
            ws.transport.write(frame[written:])  # the rest, in order, as the transport writes
        stamp = self._sent_stamp(sock)
        if stamp is None:
            self._tx_late = True  # its stamp may still come: taken off the queue at the next read
            return True, before
        self.tx_stamped += 1
        return True, stamp

    def _sent_stamp(self, sock: socket.socket) -> float | None:
        """Take the send stamps off the socket's error queue (an error queue left full would
        keep the descriptor signalling); the newest, converted to the monotonic clock."""
        stamp = None
        while True:
            try:
                _, ancillary, _, _ = sock.recvmsg(1, _ERRQUEUE_ANC, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError, OSError):
                return stamp
            real, mono = time.time(), time.monotonic()
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(raw) >= _TIMESPECS3.size:
                    sec, nsec = _TIMESPECS3.unpack_from(raw)[:2]
                    stamp = mono - max(0.0, real - (sec + nsec * 1e-9))

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if self._tx_late:
            self._tx_late = False
            self._sent_stamp(sock)  # a late send stamp (the data waited for the network)
        try:
            data, ancillary, _, _ = sock.recvmsg(READ_BYTES, self._anc)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # the transport reads the error itself once it reads again
        real, self.app = time.time(), time.monotonic()
        self.rx = self.app
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(raw)
                self.rx = self.app - max(0.0, real - (sec + nsec * 1e-9))
        if not data:
            self.stop()
            return
        self.ws.data_received(data)

    def stop(self) -> None:
        """Hand reading back to the transport (EOF, an error, or the connection is gone)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self.loop.remove_reader(sock.fileno())
        sock.close()  # only the duplicate: the transport's descriptor stays open
        transport = self.ws.transport
        if not transport.is_closing():
            transport.resume_reading()
