"""Run a load-test process's main coroutine on uvloop when installed (as callbridge does)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any

from engine.io.direct import SLICE_BYTES


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
#: at most this much per read: one slice of engine.io.direct, so no read pauses and resumes the
#: transport (which would then read past this reader, with no timestamp)
READ_BYTES = SLICE_BYTES


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
        self._anc = socket.CMSG_SPACE(_TIMESPEC.size)
        ws.transport.pause_reading()
        self.loop.add_reader(dup.fileno(), self._readable)
        closed = asyncio.ensure_future(ws.wait_closed())
        closed.add_done_callback(lambda _: self.stop())

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
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
