"""The baselines the load test measures callbridge against, on the same generator.

``bare``   forwards each message between the two sockets untouched with websockets' asyncio
           API (``async for`` + ``await send``): how a Python relay is usually written (no
           parsing, no audio work).
``bare-direct``  the same, built like callbridge's own I/O (:mod:`engine.io.direct`: each
           message written from inside the read callback); a reference, not a target: the floor
           of this design, so what callbridge costs beyond it is the engine's work.
``naive``  a straightforward transcoding relay the way peers write it: stdlib ``json``,
           ``audioop`` for G.711, ``soxr`` streaming resamplers (HQ) per call and direction,
           AI Provider protocol messages to the AI, Twilio messages back, ``clear`` forwarded.

All accept any path (the generator uses callbridge's route) and connect to ``--ai``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import warnings

import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.load.loop import run
from engine.io.direct import DirectClientConnection, DirectServerConnection, send_now

with warnings.catch_warnings():  # bench only, as peers do; removed from Python 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


async def bare(ws: ServerConnection, ai_url: str) -> None:
    async with connect(ai_url, compression=None, max_size=None, ping_interval=None) as ai:

        async def up() -> None:
            async for message in ws:
                await ai.send(message)
            await ai.close()

        async def down() -> None:
            async for message in ai:
                await ws.send(message)

        await _both(up(), down())


async def bare_direct(ws: ServerConnection, ai_url: str) -> None:
    """The bare relay on callbacks: each message is written to the other socket from inside
    the read callback (:mod:`engine.io.direct`), no task switch or send coroutine per message."""
    ai = await connect(
        ai_url, compression=None, max_size=None, ping_interval=None, create_connection=DirectClientConnection
    )
    assert isinstance(ws, DirectServerConnection) and isinstance(ai, DirectClientConnection)
    ai.attach(lambda message: send_now(ws, message, type(message) is str))
    ws.attach(lambda message: send_now(ai, message, type(message) is str))
    await ws.wait_closed()
    await ai.close()


async def naive(ws: ServerConnection, ai_url: str) -> None:
    stream_sid = ""
    up_rs = soxr.ResampleStream(8000, 24000, 1, dtype="int16", quality="HQ")
    down_rs = soxr.ResampleStream(24000, 8000, 1, dtype="int16", quality="HQ")
    ai = None
    downlink = None
    try:
        async for message in ws:
            data = json.loads(message)
            event = data.get("event")
            if event == "start":
                stream_sid = data["start"]["streamSid"]
                ai = await connect(ai_url, compression=None, max_size=None, ping_interval=None)
                await ai.send(
                    json.dumps(
                        {
                            "event": "start",
                            "start": {
                                "callId": stream_sid,
                                "otherLegCallId": data["start"]["callSid"],
                                "callerIdNumber": "+14155550123",
                                "calleeIdNumber": "+14155550100",
                                "accountId": "bench",
                                "mediaFormat": {"encoding": "pcm16", "sampleRate": 24000},
                            },
                        }
                    )
                )
                downlink = asyncio.create_task(_downlink(ai, ws, stream_sid, down_rs))
            elif event == "media" and ai is not None:
                pcm = audioop.ulaw2lin(base64.b64decode(data["media"]["payload"]), 2)
                up = up_rs.resample_chunk(np.frombuffer(pcm, dtype=np.int16))
                if len(up):
                    await ai.send(
                        json.dumps({"event": "media", "media": {"payload": base64.b64encode(up.tobytes()).decode()}})
                    )
            elif event == "stop":
                break
    finally:
        if downlink is not None:
            downlink.cancel()
        if ai is not None:
            with contextlib.suppress(Exception):
                await ai.send(
                    json.dumps({"event": "hangup", "hangup": {"callId": stream_sid, "reason": "NORMAL_CLEARING"}})
                )
                await ai.close()


async def _downlink(ai, ws: ServerConnection, stream_sid: str, rs: soxr.ResampleStream) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(Exception):
        async for message in ai:
            data = json.loads(message)
            if data.get("event") == "media":
                pcm = rs.resample_chunk(np.frombuffer(base64.b64decode(data["media"]["payload"]), dtype=np.int16))
                if len(pcm):
                    ulaw = audioop.lin2ulaw(pcm.tobytes(), 2)
                    await ws.send(
                        json.dumps(
                            {
                                "event": "media",
                                "streamSid": stream_sid,
                                "media": {"payload": base64.b64encode(ulaw).decode()},
                            }
                        )
                    )
            elif data.get("event") == "clear":
                await ws.send(json.dumps({"event": "clear", "streamSid": stream_sid}))


async def _both(*coros) -> None:  # type: ignore[no-untyped-def]
    tasks = [asyncio.create_task(c) for c in coros]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in (*done, *pending):
        with contextlib.suppress(BaseException):
            await task


async def main_async(args: argparse.Namespace) -> None:
    relay = {"bare": bare, "bare-direct": bare_direct, "naive": naive}[args.kind]
    direct = args.kind == "bare-direct"

    def process_request(connection, request):  # type: ignore[no-untyped-def]
        if direct:
            connection.direct = True

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            await relay(ws, args.ai)

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        args.host,
        args.port,
        compression=None,
        max_size=None,
        ping_interval=None,
        process_request=process_request,
        create_connection=DirectServerConnection if direct else None,
    ) as server:
        print(f"relay ready {server.sockets[0].getsockname()[1]}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("bare", "bare-direct", "naive"))
    parser.add_argument("--ai", required=True, help="the AI peer's ws:// URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    run(main_async(args))


if __name__ == "__main__":
    main()
