"""The AI provider side of the load test: an AI Provider protocol WebSocket server in its own process.

Modes (``--mode``):

``echo``   plays each caller frame straight back (AI Provider protocol ``media``; a raw message is
           echoed as it came, for the bare relay baseline, which forwards untouched)
``agent``  talks like a voice agent: after ``start`` it sends 2 s utterances in bursts, much
           faster than real time, pauses, and on a "barge-in" (a random point while the caller
           still hears the utterance) sends ``clear``, then stays silent for ``--quiet-ms`` before
           the next utterance, so any audio reaching the caller in that window is stale.

Every media message received and sent is timestamped on ``time.monotonic()``'s clock (one
system-wide clock, so the call generator's timestamps compare directly; a message received is
stamped when it reached the socket: :class:`bench.load.loop.KernelReceive`, a media message sent
just before the write, since the server it wakes may run before the write returns, and a ``clear``
by the kernel when it left: :meth:`~bench.load.loop.KernelReceive.send_stamped`); at
each call's end one JSON line is appended to ``--record``:
``{"call": ..., "recv": [...], "sent": [...], "clears": [...]}``.

The peer shares the machine's cores with the server under test, so it is kept light: messages
arrive on a callback (:mod:`engine.io.direct`) and the echo is written from inside it, with no
task switch or send coroutine per message; its cost is the same whatever the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import time
from base64 import b64encode
from pathlib import Path

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request

from bench.load.loop import KernelReceive, Stamps, freeze_startup_heap, run
from engine.io.direct import DirectServerConnection, Message, send_now

FRAME_24K = 960  # bytes of 20 ms pcm16 at 24 kHz


def utterance(seconds: float, rate: int = 24000, freq: float = 330.0) -> list[str]:
    """A speech-like tone burst split into 20 ms base64 frames (pcm16 at ``rate``)."""
    import numpy as np

    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)  # syllable-rate modulation
    signal_ = (6000 * envelope * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    step = rate // 50 * 2
    return [b64encode(signal_[i : i + step]).decode() for i in range(0, len(signal_), step)]


class Peer:
    def __init__(self, mode: str, record: Path, quiet_ms: int, seed: int) -> None:
        self.mode = mode
        self.record = record
        self.quiet = quiet_ms / 1000.0
        self.random = random.Random(seed)
        self.frames = utterance(2.0)
        self._out = record.open("ab")

    async def handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, DirectServerConnection)
        call = _Call(self, ws)
        closed = asyncio.ensure_future(ws.wait_closed())
        closed.add_done_callback(call.end)
        ws.attach(call.on_message)
        call.rx = KernelReceive(ws)
        try:
            await call.ended  # hangup/stop (the handler's return closes the connection) or closed
        finally:
            closed.cancel()
            call.finished = True
            if call.agent is not None:
                call.agent.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await call.agent
            record = {
                "call": call.call,
                "recv": call.recv.pairs(),
                "sent": call.sent.pairs(),
                "clears": call.clears,
                "clears_kernel_stamped": call.rx.tx_stamped if call.rx is not None else 0,
            }
            self._out.write(orjson.dumps(record) + b"\n")
            self._out.flush()

    async def talk(self, ws: ServerConnection, sent: Stamps, clears: list[float], rx: KernelReceive | None) -> None:
        """Utterances in bursts, a barge-in in each, then a quiet window. A clear counts from the
        kernel's stamp of when it left (:meth:`KernelReceive.send_stamped`)."""
        await asyncio.sleep(0.2 + self.random.random() * 0.5)
        while True:
            for payload in self.frames:
                message = b'{"event":"media","media":{"payload":"' + payload.encode() + b'"}}'
                at = time.monotonic()  # before the write: the server may run before it returns
                if not send_now(ws, message, True):
                    return
                sent.add(at, FRAME_24K)
                if ws.paused:  # the server is not reading: wait, as ``send`` would
                    await ws.drain()
            # The caller "interrupts" while the platform is still playing this utterance.
            await asyncio.sleep(0.3 + self.random.random() * 1.2)
            if rx is not None:
                written, at = rx.send_stamped(b'{"event":"clear"}', True)
            else:
                at = time.monotonic()
                written = send_now(ws, b'{"event":"clear"}', True)
            if not written:
                return
            clears.append(at)
            await asyncio.sleep(self.quiet)


class _Call:
    """One call's state; :meth:`on_message` runs inside the connection's read callback."""

    __slots__ = ("agent", "call", "clears", "echo", "ended", "finished", "peer", "raw", "recv", "rx", "sent", "ws")

    def __init__(self, peer: Peer, ws: DirectServerConnection) -> None:
        self.peer = peer
        self.ws = ws
        self.echo = peer.mode == "echo"
        self.call = "?"
        self.raw = False
        self.recv = Stamps()
        self.sent = Stamps()
        self.clears: list[float] = []
        self.agent: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[None] = ws.loop.create_future()
        self.finished = False  # after hangup/stop or an error: later messages are not recorded
        self.rx: KernelReceive | None = None

    def end(self, _: object = None) -> None:
        self.finished = True
        if not self.ended.done():
            self.ended.set_result(None)

    def on_message(self, message: Message) -> None:
        now = self.rx.rx if self.rx is not None else time.monotonic()
        if self.finished:
            return
        try:
            try:
                data = orjson.loads(message)
            except orjson.JSONDecodeError:
                return
            event = data.get("event")
            if event == "media":
                payload = data["media"]["payload"]
                size = len(payload) * 3 // 4 - payload.count("=", -2)
                self.recv.add(now, size)
                if self.echo:
                    if self.raw:  # as it came, text or binary
                        echo, text = message, type(message) is str
                    else:
                        echo, text = b'{"event":"media","media":{"payload":"' + payload.encode() + b'"}}', True
                    at = time.monotonic()
                    send_now(self.ws, echo, text)
                    self.sent.add(at, size)
            elif event == "start":
                start = data.get("start", {})
                # the AI Provider protocol: otherLegCallId is the platform's call id; raw Twilio: start.callSid.
                self.call = start.get("otherLegCallId") or start.get("callSid") or "?"
                self.raw = "callSid" in start
                if not self.echo:
                    self.agent = asyncio.create_task(self.peer.talk(self.ws, self.sent, self.clears, self.rx))
            elif event in ("hangup", "stop"):
                self.end()
        except Exception:
            self.end()


async def main_async(args: argparse.Namespace) -> None:
    peer = Peer(args.mode, Path(args.record), args.quiet_ms, args.seed)
    freeze_startup_heap()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)

    def direct(connection: ServerConnection, request: Request) -> None:
        assert isinstance(connection, DirectServerConnection)
        connection.direct = True

    async with serve(
        peer.handle,
        args.host,
        args.port,
        compression=None,
        max_size=None,
        ping_interval=None,
        process_request=direct,
        create_connection=DirectServerConnection,
    ) as server:
        port = server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else args.port
        print(f"ai_peer ready {port}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("echo", "agent"), default="echo")
    parser.add_argument("--record", required=True)
    parser.add_argument("--quiet-ms", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    run(main_async(args))


if __name__ == "__main__":
    main()
