"""Every platform's recorded call (``tests/vectors/<provider>/*.jsonl``, the documentation's own
messages with real audio) replayed through ``CallSession``: the AI must get exactly the AI Provider protocol's
start, the caller's tone intact and in order, the digit pressed, and a hangup at the end."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.conformance import tone_score
from engine.core.commands import Notice, Send
from engine.language.loader import SpecSet
from engine.replay import read_transcript, replay
from tests.conftest import VECTORS

CALLS = sorted(p for p in VECTORS.glob("*/call*.jsonl"))


def run(specs: SpecSet, provider: str, path: Path, ai: str = "default") -> list:
    actions = []
    for step in replay(specs, provider, read_transcript(path), ai=ai):
        actions.extend(step.actions)
    return actions


def ai_messages(actions: list) -> list[dict]:
    return [orjson.loads(a.data) for a in actions if isinstance(a, Send) and a.leg == "ai"]


def digits_in(specs: SpecSet, provider: str, path: Path) -> list[str]:
    peer = specs.providers[provider]
    out = []
    for entry in read_transcript(path):
        if entry.leg == "telephony" and entry.kind in ("frame", "binary"):
            decoded = peer.decode(entry.data, {"query": {}, "path": {}, "header": {}})
            if decoded is not None and "dtmf" in decoded.events:
                out.append(str(decoded.fields["digit"]))
    return out


@pytest.mark.parametrize("path", CALLS, ids=[f"{p.parent.name}-{p.stem}" for p in CALLS])
def test_recorded_call(specs: SpecSet, path: Path) -> None:
    provider = path.parent.name
    actions = run(specs, provider, path)
    violations = [
        a for a in actions if isinstance(a, Notice) and (a.code.startswith("violation.") or a.level == "error")
    ]
    assert violations == []
    messages = ai_messages(actions)
    assert messages[0]["event"] == "start"
    assert set(messages[0]["start"]) == {
        "callId",
        "otherLegCallId",
        "callerIdNumber",
        "calleeIdNumber",
        "accountId",
        "mediaFormat",
    }
    assert messages[0]["start"]["mediaFormat"] == {"encoding": "pcm16", "sampleRate": 24000}
    audio = b"".join(base64.b64decode(m["media"]["payload"]) for m in messages if m["event"] == "media")
    samples = np.frombuffer(audio, "<i2").astype(float)
    caller_ms = 600 if provider == "twilio" else 500  # 0.5 s of a 440 Hz tone (Twilio's own: 0.6 s)
    assert abs(len(samples) / 24.0 - caller_ms) <= 20
    assert tone_score(samples, 24000, 440.0) >= 0.98
    assert [m["dtmf"]["digit"] for m in messages if m["event"] == "dtmf"] == digits_in(specs, provider, path)
    assert messages[-1]["event"] == "hangup"


def test_telnyx_frames_out_of_order_reach_the_ai_in_order(specs: SpecSet) -> None:
    path = VECTORS / "telnyx" / "call.jsonl"
    sent = []
    for entry in read_transcript(path):
        if entry.leg == "telephony" and entry.kind == "frame":
            message = orjson.loads(entry.data)
            if message.get("event") == "media":
                sent.append((int(message["media"]["chunk"]), message["media"]["payload"]))
    assert [c for c, _ in sent] != sorted(c for c, _ in sent)  # the vector really is out of order
    # mu-law both sides: the caller's bytes pass untouched, so the order is visible exactly
    messages = ai_messages(run(specs, "telnyx", path, ai="default_ulaw"))
    assert [m["media"]["payload"] for m in messages if m["event"] == "media"] == [p for _, p in sorted(sent)]


def test_telnyx_pcma_call_is_decoded_as_a_law(specs: SpecSet) -> None:
    # The same tone, A-law on the wire: decoded with a mu-law table it would be noise.
    messages = ai_messages(run(specs, "telnyx", VECTORS / "telnyx" / "call_pcma.jsonl"))
    audio = b"".join(base64.b64decode(m["media"]["payload"]) for m in messages if m["event"] == "media")
    assert tone_score(np.frombuffer(audio, "<i2").astype(float), 24000, 440.0) >= 0.98


def test_genesys_answers_open_ping_and_close_in_sequence(specs: SpecSet) -> None:
    actions = run(specs, "genesys", VECTORS / "genesys" / "call.jsonl")
    sent = [orjson.loads(a.data) for a in actions if isinstance(a, Send) and a.leg == "telephony" and not a.binary]
    assert [m["type"] for m in sent] == ["opened", "pong", "closed"]
    assert [m["seq"] for m in sent] == [1, 2, 3]  # our own counter; binary audio frames do not count
    assert [m["clientseq"] for m in sent] == [1, 2, 4]  # the seq of the message each answers
    assert sent[0]["parameters"]["media"] == [
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
    ]
    assert {m["id"] for m in sent} == {"e160e428-53e2-487c-977d-96989bf5c99d"}


def test_exotel_sample_rate_comes_from_the_url(specs: SpecSet) -> None:
    from engine.core.session import CallRoute

    path = VECTORS / "exotel" / "call.jsonl"
    route = CallRoute("exotel", virtual_number="+14155550100", caller_id="+14155550123", query={"sample-rate": "16000"})
    steps = list(replay(specs, "exotel", read_transcript(path)[:2], route=route))
    assert steps  # handshake and start only
    from engine.core.session import AITarget, CallSession

    session = CallSession(specs, route, AITarget(specs.ai_providers["default"]))
    for entry in read_transcript(path)[:2]:
        session.receive_telephony(entry.data, entry.t)
    assert session.tel_in.sample_rate == 16000 and session.tel_out.sample_rate == 16000
    session.release()
