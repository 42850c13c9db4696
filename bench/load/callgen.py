"""The platform side of the load test: C concurrent Twilio-format calls from one process.

Each call connects to ``--url``, sends Twilio's ``connected`` and ``start`` (its ``callSid``
identifies the call to the AI peer), then one 20 ms mu-law ``media`` frame per 20 ms on absolute
deadlines (so timer lateness does not accumulate) from speech audio, and finally ``stop``.
Everything is timestamped on ``time.monotonic()``'s clock: frames sent (just before the write: the
server it wakes may run before the write returns, and a stamp taken after would hide that time),
media frames and ``clear`` messages received (when they reached the socket, from the kernel's
receive timestamp: :class:`bench.load.loop.KernelReceive`). One JSON line per call goes to ``--record``.

Bounded: every call ends after ``--seconds`` (plus a short close), whatever the server does.

The generator shares the machine's cores with the server under test, so it is kept light: each
call's messages arrive on a callback (:mod:`engine.io.direct`) and its frames are written by
``loop.call_at`` callbacks, one per frame at its deadline, with no task switch, sleep or send
coroutine per frame; its cost is the same whatever the target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import time
import warnings
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from bench.load.loop import KernelReceive, Stamps, freeze_startup_heap, run
from bench.load.speech import speech
from engine.io.direct import DirectClientConnection, Message, send_now

with warnings.catch_warnings():  # bench only, as peers do; removed from Python 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def frames_from_speech(payload_bytes: int = 160) -> tuple[list[str], str]:
    """20 ms mu-law frames; ``payload_bytes`` > 160 pads each frame (an experiment on payload size:
    what a relay pays for an AI Provider protocol pcm16 24 kHz payload, 960 bytes, instead of mu-law's 160)."""
    samples, source = speech(8000)
    ulaw = audioop.lin2ulaw(samples.tobytes(), 2)
    pad = b"\xff" * max(0, payload_bytes - 160)
    return [base64.b64encode(ulaw[i : i + 160] + pad).decode() for i in range(0, len(ulaw) - 159, 160)], source


FRAME_S = 0.02
WIND_DOWN_S = 2.0  # after ``stop``: how long to wait for the server's last messages


async def one_call(
    url: str, index: int, run: str, frames: list[str], start_at: float, seconds: float, out: list[dict]
) -> None:
    call = f"CA{run}{index:08d}"
    stream = f"MZ{run}{index:08d}"
    sent: list[float] = []
    recv = Stamps()
    clears: list[float] = []
    clears_app: list[float] = []  # when this process got to each clear (its own delay included)
    error = ""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    rx: KernelReceive | None = None

    def on_message(message: Message) -> None:
        now = rx.rx if rx is not None else time.monotonic()
        try:
            text = message if type(message) is str else message.decode()
            if '"media"' in text:
                payload = orjson.loads(text)["media"]["payload"]
                recv.add(now, len(payload) * 3 // 4 - payload.count("=", -2))
            elif '"clear"' in text:
                clears.append(now)
                clears_app.append(rx.app if rx is not None else now)
        except Exception:
            pass

    try:
        ws = await connect(
            url,
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=10,
            create_connection=DirectClientConnection,
        )
    except Exception as exc:
        out.append({"call": call, "sent": sent, "recv": [], "clears": clears, "error": _error(exc)})
        return
    assert isinstance(ws, DirectClientConnection)
    try:
        ws.attach(on_message)
        rx = KernelReceive(ws)
        start = orjson.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": stream,
                "start": {
                    "accountSid": "ACbench",
                    "streamSid": stream,
                    "callSid": call,
                    "tracks": ["inbound"],
                    "customParameters": {},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        if not (
            send_now(ws, '{"event":"connected","protocol":"Call","version":"1.0.0"}', True)
            and send_now(ws, start, True)
        ):
            raise _closed(ws)
        count = int(seconds * 50)
        stop = (
            f'{{"event":"stop","sequenceNumber":"{count + 2}","stop":{{"accountSid":"ACbench",'
            f'"callSid":"{call}"}},"streamSid":"{stream}"}}'
        )
        begin = loop.time()
        done: asyncio.Future[bool] = loop.create_future()  # True: all frames and stop were sent
        n_frames = len(frames)

        def tick(k: int) -> None:
            """Send frame ``k`` (at its deadline, ``begin + k * 20 ms``), then schedule the next."""
            if done.done():
                return
            payload = frames[k % n_frames]
            message = (
                f'{{"event":"media","sequenceNumber":"{k + 2}","media":{{"track":"inbound","chunk":"{k + 1}",'
                f'"timestamp":"{k * 20}","payload":"{payload}"}},"streamSid":"{stream}"}}'
            )
            at = time.monotonic()  # before the write: the server may run before it returns
            if not send_now(ws, message, True):
                done.set_result(False)
                return
            sent.append(at)
            k += 1
            if k < count:
                loop.call_at(begin + k * FRAME_S, tick, k)
            else:
                done.set_result(send_now(ws, stop, True))

        if count > 0:
            tick(0)
        else:
            done.set_result(send_now(ws, stop, True))
        try:
            # Each tick runs at its deadline or, when the loop is late, as soon as it can: done well
            # before this bound unless the process is starved.
            async with asyncio.timeout(seconds + 30.0):
                completed = await done
        finally:
            if not done.done():
                done.set_result(False)  # stops the ticks
        if not completed:
            raise _closed(ws)
        # The server's last messages (the tail of the echo): up to 2 s, or until it closes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WIND_DOWN_S):
                await ws.wait_closed()
    except Exception as exc:
        error = _error(exc)
    finally:
        ws.attach(_ignore)  # what arrives while closing is not recorded
        with contextlib.suppress(Exception):
            await ws.close()
    out.append(
        {
            "call": call,
            "sent": sent,
            "recv": recv.pairs(),
            "clears": clears,
            "clears_app": clears_app,
            "kernel_stamps": rx is not None and rx.kernel,
            "error": error,
        }
    )


def _ignore(message: Message) -> None:
    pass


def _closed(ws: DirectClientConnection) -> ConnectionError:
    close = ws.protocol.close_rcvd
    return ConnectionError(f"connection closed while sending ({f'received {close}' if close else 'no close frame'})")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def main_async(args: argparse.Namespace) -> None:
    frames, source = frames_from_speech(args.payload_bytes)
    freeze_startup_heap()
    out: list[dict] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    tasks = [
        one_call(args.url, i, args.run, frames, t0 + args.ramp * i / max(1, args.calls), args.seconds, out)
        for i in range(args.calls)
    ]
    await asyncio.gather(*tasks)
    with Path(args.record).open("wb") as fh:
        for row in out:
            fh.write(orjson.dumps({**row, "audio_source": source}) + b"\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which calls start")
    parser.add_argument("--run", default="0000")
    parser.add_argument("--record", required=True)
    parser.add_argument("--payload-bytes", type=int, default=160, help="pad frames to this size (experiments)")
    args = parser.parse_args(argv)
    run(main_async(args))


if __name__ == "__main__":
    main()
