"""Operator surface in-process: health, readiness, metrics, capacity, and a SIGTERM-style drain."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
import websockets
from websockets.asyncio.client import connect

from engine.io.callsim import CallSim
from engine.io.wav import speechlike
from engine.language.loader import SpecSet

from .helpers import TWILIO_CALL, RecordingAI, Script, bridge_server, call_url, config_for, run


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_ready_metrics(specs: SpecSet) -> None:
    async def body() -> None:
        async with bridge_server(specs, config_for()) as server:
            base = f"http://127.0.0.1:{server.port}"
            assert await asyncio.to_thread(http_get, base + "/healthz") == (200, "ok\n")
            for _ in range(200):
                if server.ready:
                    break
                await asyncio.sleep(0.05)
            assert (await asyncio.to_thread(http_get, base + "/readyz"))[0] == 200
            report = await CallSim(specs, "twilio", call_url(server), speechlike(8000, 0.6), 8000,
                                   tail_s=0.3).run()
            assert report.clean
            await asyncio.sleep(0.1)
            status, text = await asyncio.to_thread(http_get, base + "/metrics")
            assert status == 200
            assert 'callbridge_calls_total{outcome="completed",provider="twilio"} 1.0' in text
            assert "callbridge_active_calls 0.0" in text
            assert 'callbridge_frames_total{direction="in",leg="telephony"}' in text
            assert "callbridge_frame_processing_seconds_bucket" in text

    run(body)


def test_capacity_and_drain_hang_up_both_legs(specs: SpecSet) -> None:
    async def body() -> None:
        async with RecordingAI(Script()) as ai, bridge_server(specs, config_for(ai.url, max_calls=1)) as server:
            sim = CallSim(specs, "twilio", call_url(server), speechlike(8000, 6.0), 8000, transcript=TWILIO_CALL)
            live = asyncio.get_running_loop().create_task(sim.run())
            while not server.bridges:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            # full: a second call is refused before the upgrade
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                await connect(call_url(server), proxy=None)
            assert info.value.response.status_code == 503
            drain = asyncio.get_running_loop().create_task(server.drain(0.3))
            await asyncio.sleep(0.05)
            status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{server.port}/readyz")
            assert status == 503
            report = await live
            await drain
            assert report.close_code == 1000, report.summary()
            assert report.frames_sent < 250  # hung up long before its 6 s of audio
            (call,) = ai.calls
            assert call.messages[-1]["event"] == "hangup"
            assert call.messages[-1]["hangup"]["reason"] == "NORMAL_CLEARING"
            assert call.close_code == 1000
            assert server.metrics.calls.labels("twilio", "drained")._value.get() == 1

    run(body)


def test_idle_platform_is_hung_up_cleanly(specs: SpecSet) -> None:
    lines = TWILIO_CALL.read_text().splitlines()

    async def body() -> None:
        async with RecordingAI(Script()) as ai, \
                bridge_server(specs, config_for(ai.url, idle_timeout_s=0.4)) as server:
            async with connect(call_url(server), proxy=None) as ws:
                for line in lines[:4]:  # connected, start, two media; then silence on the wire
                    await ws.send(line)
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                rcvd = ws.protocol.close_rcvd
                assert rcvd is not None and rcvd.code == 1000
            await asyncio.sleep(0.2)
            (call,) = ai.calls
            assert call.messages[-1]["event"] == "hangup" and call.close_code == 1000
            assert server.metrics.calls.labels("twilio", "idle_timeout")._value.get() == 1

    run(body)
