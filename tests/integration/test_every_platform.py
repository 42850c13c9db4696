"""The acceptance over real sockets on 127.0.0.1: ``callbridge call --provider X`` (the
call simulator, speaking each platform from its spec alone) completes a whole call against one
``callbridge serve`` for EVERY telephony spec, with the embedded echo AI; the audio that comes
back is checked by correlation. And an OpenAI-Realtime-format AI provider (faithful to the
published events) gets a bridged call whose barge-in truncates the assistant's item at the
position the caller had actually heard.

No timing assertions: what arrived, in what order, and whether it is the same signal; the
truncation point is compared with the caller's own count of the audio it had played.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re

import numpy as np
import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.config import Config
from engine.dsp.resample import Resampler
from engine.io.callsim import CallSim
from engine.io.wav import best_correlation, speechlike
from engine.language.loader import SpecSet

from .helpers import bridge_server, call_url, config_for, pcm16_frames, run

#: These calls run concurrently in real time; with NUMBA_DISABLE_JIT=1 the kernels are plain
#: Python, far too slow for that, and the caller falls behind the playout clock. JIT-off runs
#: check the kernels' results (tests/dsp and the rest of the suite), not their speed.
needs_compiled_kernels = pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT") == "1",
    reason="real-time concurrent calls need the compiled kernels",
)


def to_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == 8000:
        return samples
    return Resampler(rate, 8000).process(np.asarray(samples, dtype=np.int16))


@needs_compiled_kernels
def test_every_platform_completes_a_call_against_serve(specs: SpecSet) -> None:
    said = speechlike(8000, 1.2)
    providers = sorted(specs.providers)
    assert len(providers) >= 11

    async def body() -> None:
        async with bridge_server(specs, Config()) as server:  # no routes: the embedded echo AI

            async def one(provider: str) -> tuple[str, object]:
                sim = CallSim(specs, provider, call_url(server, provider), said, 8000, dtmf="5", tail_s=0.6)
                return provider, await sim.run()

            results = await asyncio.gather(*(one(p) for p in providers))
            await asyncio.sleep(0.1)
        failures = []
        for provider, report in results:
            if not report.clean or report.frames_received == 0:  # type: ignore[attr-defined]
                failures.append(f"{provider}: {report.summary()}")  # type: ignore[attr-defined]
                continue
            heard = to_8k(report.received, report.rate)  # type: ignore[attr-defined]
            corr, _ = best_correlation(said, heard, 4000)
            if corr < 0.9:
                failures.append(f"{provider}: the echo came back distorted (correlation {corr:.3f})")
        assert failures == []
        # every call was a whole call in the server's own accounting
        counted = {p: server.metrics.calls.labels(p, "completed")._value.get() for p in providers}
        assert counted == {p: 1 for p in providers}

    run(body, timeout=60)


class OpenAIRealtimeServer:
    """A test AI provider speaking the OpenAI Realtime API's published events.

    On connect: ``session.created``. ``session.update`` -> ``session.updated``. Caller audio
    arrives as ``input_audio_buffer.append``. After the session is configured it answers with two
    assistant items as ``response.output_audio.delta`` events (``item_id``, ``content_index``,
    base64 ``delta``), all at once (faster than real time, as the model does); ``speak_ms`` into
    the call it sends ``input_audio_buffer.speech_started`` (the caller talks over it), and
    answers ``conversation.item.truncate`` with ``conversation.item.truncated``.
    """

    def __init__(self, items: list[tuple[str, np.ndarray]], barge_in_after_s: float) -> None:
        self.items = items
        self.barge_in_after_s = barge_in_after_s
        self.received: list[dict] = []
        self.events = itertools.count(1)
        self.url = ""

    def event(self, kind: str, **fields: object) -> bytes:
        return orjson.dumps({"type": kind, "event_id": f"event_{next(self.events)}", **fields})

    async def __aenter__(self) -> OpenAIRealtimeServer:
        self.server = await serve(self.handler, "127.0.0.1", 0, compression=None)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def handler(self, ws: ServerConnection) -> None:
        await ws.send(
            self.event("session.created", session={"id": "sess_test", "object": "realtime.session"}), text=True
        )
        speaker: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                message = orjson.loads(raw)
                self.received.append(message)
                kind = message.get("type")
                if kind == "session.update" and speaker is None:
                    await ws.send(self.event("session.updated", session=message["session"]), text=True)
                    speaker = asyncio.get_running_loop().create_task(self.speak(ws))
                elif kind == "conversation.item.truncate":
                    await ws.send(
                        self.event(
                            "conversation.item.truncated",
                            item_id=message["item_id"],
                            content_index=message["content_index"],
                            audio_end_ms=message["audio_end_ms"],
                        ),
                        text=True,
                    )
        except ConnectionClosed:
            pass
        finally:
            if speaker is not None:
                speaker.cancel()

    async def speak(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for index, (item_id, audio) in enumerate(self.items):
            for frame in pcm16_frames(audio, 24000, 100):
                await ws.send(
                    self.event(
                        "response.output_audio.delta",
                        response_id="resp_1",
                        item_id=item_id,
                        output_index=index,
                        content_index=0,
                        delta=base64.b64encode(frame).decode(),
                    ),
                    text=True,
                )
        await asyncio.sleep(max(0.0, t0 + self.barge_in_after_s - loop.time()))
        await ws.send(
            self.event("input_audio_buffer.speech_started", audio_start_ms=1200, item_id="item_user_2"), text=True
        )


@needs_compiled_kernels
def test_openai_realtime_barge_in_truncates_at_the_heard_position(specs: SpecSet) -> None:
    first = speechlike(24000, 0.4, f0=180.0)  # a short item, heard to its end
    second = speechlike(24000, 3.0, f0=210.0)  # interrupted part-way
    ai = OpenAIRealtimeServer([("item_A", first), ("item_B", second)], barge_in_after_s=1.3)

    async def body() -> None:
        async with ai, bridge_server(specs, config_for(ai.url, ai="openai-realtime")) as server:
            sim = CallSim(specs, "twilio", call_url(server), speechlike(8000, 2.0), 8000, tail_s=0.5)
            report = await sim.run()
            await asyncio.sleep(0.2)
        assert report.clean, report.summary()
        # the GA session set-up, then the caller's audio as appends
        kinds = [m["type"] for m in ai.received]
        assert kinds[0] == "session.update"
        session = ai.received[0]["session"]
        assert session["type"] == "realtime"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert kinds.count("input_audio_buffer.append") > 50
        # the barge-in: the caller's platform was told to clear, nothing stale after it
        assert report.clears == 1
        after = report.timeline[report.timeline.index("clear") + 1 :]
        assert "media" not in after
        # ... and the assistant's item being played was truncated where the caller had got to
        truncates = [m for m in ai.received if m["type"] == "conversation.item.truncate"]
        assert len(truncates) == 1, kinds
        truncate = truncates[0]
        assert truncate["item_id"] == "item_B" and truncate["content_index"] == 0
        heard_total = report.heard_ms_at_clear[0]
        heard_of_b = heard_total - 400  # item_A (0.4 s) was heard first, in full
        assert abs(truncate["audio_end_ms"] - heard_of_b) <= 20, (truncate, heard_total)
        assert 0 < truncate["audio_end_ms"] < 3000

    run(body, timeout=60)


@pytest.mark.parametrize("provider", ["genesys"])
def test_request_answer_pairs_keep_their_numbers_over_a_socket(specs: SpecSet, provider: str) -> None:
    """Genesys numbers every JSON message: our `opened`/`closed` answer the right seq."""

    async def body() -> None:
        async with bridge_server(specs, Config()) as server:
            sim = CallSim(specs, provider, call_url(server, provider), speechlike(8000, 0.6), 8000, tail_s=0.2)
            report = await sim.run()
        assert report.clean, report.summary()
        # (the simulator keeps the first 120 characters of messages it does not read as audio)
        answers = [dict(re.findall(r'"(type|seq|clientseq)":"?(\w+)', line)) for line in report.unknown]
        assert [m["type"] for m in answers] == ["opened", "closed"]
        assert [m["seq"] for m in answers] == ["1", "2"]
        assert answers[0]["clientseq"] == "1" and int(answers[1]["clientseq"]) > 1

    run(body, timeout=30)


def test_auto_route_detects_every_platform(specs: SpecSet) -> None:
    """/ws-adapter/auto/...: the platform is told from its first message(s), then the call runs
    as if the URL had named it."""
    said = speechlike(8000, 0.6)
    providers = sorted(specs.providers)

    async def body() -> None:
        async with bridge_server(specs, Config()) as server:

            async def one(provider: str) -> tuple[str, object]:
                url = call_url(server, provider).replace(f"/ws-adapter/{provider}/", "/ws-adapter/auto/")
                return provider, await CallSim(specs, provider, url, said, 8000, tail_s=0.3).run()

            results = await asyncio.gather(*(one(p) for p in providers))
            await asyncio.sleep(0.1)
            for provider, report in results:
                assert report.clean and report.frames_received > 0, (provider, report.summary())  # type: ignore[attr-defined]
            counted = {p: server.metrics.calls.labels(p, "completed")._value.get() for p in providers}
            assert counted == {p: 1 for p in providers}

    run(body, timeout=60)


def test_auto_route_refuses_an_ambiguous_opening(specs: SpecSet) -> None:
    from websockets.asyncio.client import connect

    async def body() -> None:
        async with bridge_server(specs, Config()) as server:
            url = call_url(server, "twilio").replace("/ws-adapter/twilio/", "/ws-adapter/auto/")
            async with connect(url, compression=None) as ws:
                # a bare connected (Smartflo? Exotel?), then a start that contradicts every
                # Twilio-compatible spec's fingerprint: the server must say so, not guess
                await ws.send('{"event": "connected"}')
                start = {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": "MZ1",
                    "start": {
                        "streamSid": "MZ1",
                        "callSid": "CA1",
                        "tracks": ["inbound"],
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                    },
                }
                await ws.send(orjson.dumps(start).decode())
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                rcvd = ws.protocol.close_rcvd
                assert rcvd is not None and rcvd.code == 1008
                assert rcvd.reason.startswith("cannot tell the platform: the first 2 messages match")
                assert "twilio" in rcvd.reason and "smartflo" in rcvd.reason

    run(body, timeout=30)
