"""Recorded Twilio transcripts through ``CallSession``: what the AI provider receives must be
exactly the AI Provider protocol's messages, in order; barge-in must leave no stale audio and settle every mark.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
import pytest

from engine.core.commands import CloseLeg, OpenLeg, Send
from engine.language.loader import SpecSet
from engine.replay import read_transcript, replay
from tests.conftest import VECTORS

CALL = VECTORS / "twilio" / "call.jsonl"
BARGEIN = VECTORS / "twilio" / "bargein.jsonl"
CALLER_FRAMES = [
    json.loads(line)["media"]["payload"]
    for line in CALL.read_text().splitlines()
    if json.loads(line)["event"] == "media"
]


def run(specs: SpecSet, path, ai: str) -> list:
    actions = []
    for step in replay(specs, "twilio", read_transcript(path), ai=ai):
        actions.extend(step.actions)
    return actions


def ai_messages(actions: list) -> list[dict]:
    return [orjson.loads(a.data) for a in actions if isinstance(a, Send) and a.leg == "ai"]


def expected_start(encoding: str, rate: int) -> dict:
    return {
        "event": "start",
        "start": {
            "callId": "replay",
            "otherLegCallId": "CA3e0f5e25d5f5b5a2e7d54f3b6e1c1d1f",
            "callerIdNumber": "+14155550123",
            "calleeIdNumber": "+14155550100",
            "accountId": "AC25e16e9a716a4a1786a7c83f58e30482",
            "mediaFormat": {"encoding": encoding, "sampleRate": rate},
        },
    }


def test_recorded_call_gives_exactly_the_seed_000_messages(specs: SpecSet) -> None:
    actions = run(specs, CALL, "default_ulaw")
    opens = [a for a in actions if isinstance(a, OpenLeg)]
    assert len(opens) == 1 and opens[0].url == "ws://127.0.0.1:8765/ws/v1/echo"
    messages = ai_messages(actions)
    assert messages[0] == expected_start("g711_ulaw", 8000)
    media = [m for m in messages[1:] if m["event"] == "media"]
    # mu-law both sides: the caller's bytes reach the AI untouched, every frame, in order.
    assert [m["media"]["payload"] for m in media] == CALLER_FRAMES
    assert [m["event"] for m in messages] == ["start"] + ["media"] * 25 + ["dtmf"] + ["media"] * 5 + ["hangup"]
    assert messages[26] == {
        "event": "dtmf",
        "dtmf": {"callId": "replay", "otherLegCallId": "CA3e0f5e25d5f5b5a2e7d54f3b6e1c1d1f", "digit": "1"},
    }
    assert messages[-1] == {
        "event": "hangup",
        "hangup": {
            "callId": "replay",
            "otherLegCallId": "CA3e0f5e25d5f5b5a2e7d54f3b6e1c1d1f",
            "reason": "NORMAL_CLEARING",
        },
    }
    # the AI Provider protocol: the server closes the AI socket right after the hangup.
    last_ai = [a for a in actions if getattr(a, "leg", "") == "ai" and isinstance(a, (Send, CloseLeg))][-1]
    assert isinstance(last_ai, CloseLeg) and last_ai.code == 1000
    assert any(isinstance(a, CloseLeg) and a.leg == "telephony" for a in actions)


def test_recorded_call_to_a_pcm16_ai_is_transcoded(specs: SpecSet) -> None:
    pytest.importorskip("engine.dsp.transcoder")
    messages = ai_messages(run(specs, CALL, "default"))
    assert messages[0] == expected_start("pcm16", 24000)
    media = [m for m in messages if m["event"] == "media"]
    audio = np.frombuffer(b"".join(base64.b64decode(m["media"]["payload"]) for m in media), "<i2").astype(float)
    assert len(audio) == 30 * 480  # 20 ms at 24 kHz per caller frame, none lost or added
    t = np.arange(len(audio)) / 24000.0
    best = max(
        np.corrcoef(audio[240:], np.sin(2 * np.pi * 440 * t[240:] + phase))[0, 1]
        for phase in np.linspace(0, 2 * np.pi, 64)
    )
    assert best >= 0.99


def test_bargein_leaves_no_stale_audio_and_settles_every_mark(specs: SpecSet) -> None:
    actions = run(specs, BARGEIN, "default")
    tel = [(i, orjson.loads(a.data)) for i, a in enumerate(actions) if isinstance(a, Send) and a.leg == "telephony"]
    clears = [i for i, m in tel if m["event"] == "clear"]
    assert len(clears) == 1
    assert all(m.get("streamSid") == "MZ18ad3ab5a668481ce02b83e7395059f0" for _, m in tel)
    after = [m for i, m in tel if i > clears[0]]
    assert [m for m in after if m["event"] == "media"] == []  # nothing queued before the clear leaks out
    sent_media = [m for i, m in tel if m["event"] == "media"]
    # Paced: at the clear (0.31 s after the AI's first audio) at most ~lead + elapsed was released.
    assert 10 <= len(sent_media) <= 27
    answers = [m for m in ai_messages(actions) if m["event"] == "mark"]
    # Both marks sat beyond what was played: each resolves exactly once, as cleared, even
    # though Twilio echoed them (its echo on clear does not mean played).
    assert answers == [
        {"event": "mark", "mark": {"name": "part-1", "status": "cleared"}},
        {"event": "mark", "mark": {"name": "part-2", "status": "cleared"}},
    ]
