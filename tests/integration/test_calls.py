"""Whole calls over real sockets: a Twilio-format caller, callbridge, and a recording AI provider.

Correctness only (what arrived, in what order, whether the audio is the same signal); no
timing assertions.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import connect

from engine.dsp.resample import Resampler
from engine.io.callsim import CallSim
from engine.io.wav import best_correlation, speechlike, tone
from engine.language.loader import SpecSet

from .helpers import (
    TWILIO_CALL,
    RecordingAI,
    Script,
    bridge_server,
    call_url,
    config_for,
    decode_pcm16,
    free_port,
    pcm16_frames,
    run,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"  # the stream in tests/vectors/twilio/call.jsonl
CALL_SID = "CA3e0f5e25d5f5b5a2e7d54f3b6e1c1d1f"


def to_8k(samples: np.ndarray) -> np.ndarray:
    return Resampler(24000, 8000).process(np.asarray(samples, dtype=np.int16))


def caller(specs: SpecSet, url: str, audio: np.ndarray, **kw: object) -> CallSim:
    return CallSim(specs, "twilio", url, audio, 8000, transcript=TWILIO_CALL, **kw)  # type: ignore[arg-type]


def test_whole_call_both_ways(specs: SpecSet) -> None:
    said = speechlike(8000, 1.6)
    answer = speechlike(24000, 1.2, f0=210.0)
    script = Script(audio=pcm16_frames(answer, 24000))

    async def body() -> None:
        async with RecordingAI(script) as ai, bridge_server(specs, config_for(ai.url)) as server:
            report = await caller(specs, call_url(server), said, dtmf="1#", tail_s=0.6).run()
            await asyncio.sleep(0.2)
            assert report.clean, report.summary()
            (call,) = ai.calls
            # the AI Provider protocol: start first, exactly these fields
            first = call.messages[0]
            assert first["event"] == "start"
            start = first["start"]
            assert set(start) == {"callId", "otherLegCallId", "callerIdNumber", "calleeIdNumber",
                                  "accountId", "mediaFormat"}
            assert start["otherLegCallId"] == CALL_SID
            assert start["callerIdNumber"] == "+919701966915"  # caller_id without +, region IN
            assert start["calleeIdNumber"] == "+14155550100"
            assert start["accountId"] == "acc_test"
            assert start["mediaFormat"] == {"encoding": "pcm16", "sampleRate": 24000}
            assert call.headers.get("Authorization") == "Bearer test-secret"
            # then media and dtmf, then hangup with a reason, then the close
            kinds = [m["event"] for m in call.messages]
            assert kinds.count("start") == 1
            assert kinds[-1] == "hangup"
            hangup = call.messages[-1]["hangup"]
            assert hangup == {"callId": start["callId"], "otherLegCallId": CALL_SID, "reason": "NORMAL_CLEARING"}
            digits = [m["dtmf"] for m in call.events("dtmf")]
            assert [d["digit"] for d in digits] == ["1", "#"]
            assert all(d["callId"] == start["callId"] and d["otherLegCallId"] == CALL_SID for d in digits)
            assert call.close_code == 1000
            # the caller's audio reached the AI as the same signal (24 kHz pcm16)
            heard = to_8k(decode_pcm16([call.audio()]))
            corr, _ = best_correlation(said, heard, 2000)
            assert corr >= 0.9, corr
            # the AI's audio reached the caller as Twilio media on the caller's stream
            assert report.stream_ids == {SID}
            corr, _ = best_correlation(to_8k(answer), report.received, 4000)
            assert corr >= 0.9, corr

    run(body)


def test_barge_in_clears_the_platform_and_settles_marks(specs: SpecSet) -> None:
    answer = speechlike(24000, 3.0, f0=190.0)
    script = Script(audio=pcm16_frames(answer, 24000), burst=True,
                    marks_after={5: "early", 140: "late"}, clear_after_s=0.8)

    async def body() -> None:
        async with RecordingAI(script) as ai, bridge_server(specs, config_for(ai.url)) as server:
            report = await caller(specs, call_url(server), speechlike(8000, 1.6), tail_s=0.5).run()
            await asyncio.sleep(0.2)
            assert report.clean, report.summary()
            assert report.clears == 1
            after_clear = report.timeline[report.timeline.index("clear") + 1:]
            assert "media" not in after_clear, "audio queued before the clear arrived after it"
            assert len(report.received) < 2.5 * 8000  # far less than the 3 s the AI queued
            (call,) = ai.calls
            answers = {m["mark"]["name"]: m["mark"].get("status", "played") for m in call.events("mark")}
            assert answers == {"early": "played", "late": "cleared"}

    run(body)


def test_caller_hangs_up_and_ai_hangs_up(specs: SpecSet) -> None:
    async def body() -> None:
        # AI ends the call after 10 frames: the caller's leg is closed with Twilio's close
        async with RecordingAI(Script(hangup_after_media=10)) as ai, \
                bridge_server(specs, config_for(ai.url)) as server:
            report = await caller(specs, call_url(server), speechlike(8000, 3.0), tail_s=0.2).run()
            assert report.close_code == 1000, report.summary()
            assert report.frames_sent < 150  # cut short, not played to the end
            assert server.metrics.calls.labels("twilio", "completed")._value.get() == 1

    run(body)


def test_ai_unreachable_at_start(specs: SpecSet) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/ai"

    async def body() -> None:
        async with bridge_server(specs, config_for(dead, retries=2)) as server:
            report = await caller(specs, call_url(server), speechlike(8000, 3.0), tail_s=0.2).run()
            assert report.close_code == 1000, report.summary()  # Twilio's own close, not an error
            assert report.frames_received == 0
            m = server.metrics
            assert m.ai_connect_failures.labels("default")._value.get() == 3  # 1 + 2 retries
            await asyncio.sleep(0.1)
            assert m.calls.labels("twilio", "ai_unreachable")._value.get() == 1

    run(body)


def test_ai_fallback_provider(specs: SpecSet) -> None:
    from engine.config import AIFailurePolicy, Target

    dead = f"ws://127.0.0.1:{free_port()}/ai"

    async def body() -> None:
        async with RecordingAI(Script(echo=True)) as ai:
            base = config_for(dead, retries=0)
            config = type(base)(routes=base.routes, limits=base.limits, ai_failure=AIFailurePolicy(
                retries=0, backoff_s=0.01, fallback=Target("default", ai.url)))
            async with bridge_server(specs, config) as server:
                said = speechlike(8000, 1.0)
                report = await caller(specs, call_url(server), said, tail_s=0.5).run()
                assert report.clean
                assert len(ai.calls) == 1 and ai.calls[0].events("start")
                corr, _ = best_correlation(said, report.received, 4000)
                assert corr >= 0.9

    run(body)


def test_ai_drops_mid_call(specs: SpecSet) -> None:
    async def body() -> None:
        async with RecordingAI(Script(drop_after_media=15)) as ai, \
                bridge_server(specs, config_for(ai.url)) as server:
            report = await caller(specs, call_url(server), speechlike(8000, 3.0), tail_s=0.2).run()
            assert report.close_code == 1000, report.summary()
            assert report.frames_sent < 150
            await asyncio.sleep(0.1)
            assert server.metrics.calls.labels("twilio", "ai_dropped")._value.get() == 1

    run(body)


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/ws-adapter/nope/inbound/1/1/+14155550100", 404, ["unknown provider 'nope'"]),  # and no list of known ones
    ("/ws-adapter/twilio/sideways/1/1/+14155550100", 400, ["call_type", "sideways"]),
    ("/ws-adapter/twilio/inbound/abc/1/+14155550100", 400, ["agent_id", "abc"]),
    ("/ws-adapter/twilio/inbound/1/x1/+14155550100", 400, ["outlet_id", "x1"]),
    ("/ws-adapter/twilio/inbound/1/1/call-me", 400, ["virtual_number", "call-me"]),
    ("/ws-adapter/twilio/inbound/1/1", 400, ["virtual_number"]),
    ("/elsewhere", 404, ["no route"]),
])
def test_bad_paths_are_refused_before_the_upgrade(specs: SpecSet, path: str, status: int, words: list[str]) -> None:
    async def body() -> None:
        async with bridge_server(specs, config_for()) as server:
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None)
            response = info.value.response
            assert response.status_code == status
            text = response.body.decode()
            for word in words:
                assert word in text

    run(body)


def test_malformed_call_does_not_touch_fifty_others(specs: SpecSet) -> None:
    """51 calls at once through the echo AI; one sends garbage. Each caller hears its own tone."""
    freqs = [300.0 + 37.0 * i for i in range(50)]
    lines = TWILIO_CALL.read_text().splitlines()

    async def bad_call(url: str) -> int | None:
        async with connect(url, proxy=None, compression=None) as ws:
            await ws.send(lines[0])
            await ws.send(lines[1])
            for junk in ("{not json", '{"event": "bogus"}', '[1, 2]',
                         '{"event": "media", "media": {"payload": "%%%"}}', b"\x00\x01"):
                await ws.send(junk)
            for line in lines[2:12]:
                await ws.send(line)
                await asyncio.sleep(0.02)
            await ws.send(lines[-1])  # stop
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            rcvd = ws.protocol.close_rcvd
            return rcvd.code if rcvd else None

    async def body() -> None:
        async with bridge_server(specs, config_for(max_calls=100)) as server:
            url = call_url(server)
            sims = [caller(specs, url, tone(f, 8000, 1.2), tail_s=0.5) for f in freqs]
            bad_code, reports = await asyncio.gather(bad_call(url), asyncio.gather(*(s.run() for s in sims)))
            assert bad_code == 1000  # the bad call itself ends normally (policy: warn)
            bad = server.metrics.bad_messages
            assert bad.labels("telephony", "malformed")._value.get() >= 3
            assert bad.labels("telephony", "unknown")._value.get() >= 2
            for i, report in enumerate(reports):
                assert report.clean, (i, report.summary())
                own, _ = best_correlation(tone(freqs[i], 8000, 1.2), report.received, 400)
                other, _ = best_correlation(tone(freqs[(i + 1) % 50], 8000, 1.2), report.received, 400)
                assert own >= 0.9, (i, own)
                assert other < 0.3, (i, other)
            await asyncio.sleep(0.2)
            assert server.metrics.calls.labels("twilio", "completed")._value.get() == 51

    run(body, timeout=120)
