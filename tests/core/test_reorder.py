"""The telephony reorder buffer (``audio.reorder``): order restored, late and duplicate frames
dropped, a frame missing past the window given up on and concealed, control messages' numbers
never counted as missing audio; and platforms that do not declare it never build one."""

from __future__ import annotations

import base64

import orjson

from engine.core.commands import Notice, Send
from engine.core.reorder import Reorder
from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet


def f(n: int) -> bytes:
    return bytes([n]) * 4


def test_order_restored_within_the_window() -> None:
    r = Reorder("chunk", 3)
    out = []
    for key in (1, 3, 2, 5, 4, 6):
        out += r.push(key, f(key))
    assert out == [f(k) for k in range(1, 7)]
    assert r.gaps == 0 and r.dropped == 0


def test_late_and_duplicate_frames_are_dropped() -> None:
    r = Reorder("chunk", 3)
    assert r.push(5, f(5)) == [f(5)]
    assert r.push(4, f(4)) == []  # before the stream's first frame: too late
    assert r.push(5, f(5)) == []  # again
    assert r.dropped == 2


def test_a_missing_frame_is_given_up_after_the_window() -> None:
    r = Reorder("chunk", 3)
    out = r.push(1, f(1))
    for key in (3, 4):
        out += r.push(key, f(key))
    assert out == [f(1)]  # 2 may still come
    out = r.push(5, f(5))
    assert out == [1, f(3), f(4), f(5)]  # a gap of one frame, then the rest in order
    assert r.gaps == 1
    assert r.push(2, f(2)) == [] and r.dropped == 1  # too late now


def test_sequence_numbers_of_control_messages_are_not_gaps() -> None:
    r = Reorder("sequence", 2)
    assert r.skip(1) == []  # the start message: media begins at 2
    out = r.push(3, f(3))
    out += r.skip(2)  # a dtmf took number 2
    out += r.push(4, f(4))
    assert out == [f(3), f(4)] and r.gaps == 0


def test_timestamp_keys_advance_by_duration() -> None:
    r = Reorder("timestamp", 2, duration_ms=lambda b: len(b) * 5.0)  # 4 bytes = 20 ms
    out = []
    for key in (0, 40, 20, 60):
        out += r.push(key, f(key // 20))
    assert out == [f(0), f(1), f(2), f(3)]


def test_flush_releases_what_is_held_in_order() -> None:
    r = Reorder("chunk", 5)
    r.push(1, f(1))
    r.push(4, f(4))
    r.push(3, f(3))
    assert r.flush() == [f(3), f(4)]


def media(seq: int, payload: bytes) -> str:
    return orjson.dumps(
        {
            "event": "media",
            "sequence_number": str(seq),
            "stream_id": "S",
            "media": {"chunk": str(seq - 1), "timestamp": "0", "payload": base64.b64encode(payload).decode()},
        }
    ).decode()


def telnyx_session(specs: SpecSet) -> CallSession:
    session = CallSession(specs, CallRoute("telnyx"), AITarget(specs.ai_providers["default_ulaw"]))
    session.receive_telephony('{"event": "connected", "version": "1.0.0"}', 0.0)
    session.receive_telephony(
        orjson.dumps(
            {
                "event": "start",
                "sequence_number": "1",
                "stream_id": "S",
                "start": {"call_control_id": "v2:x", "media_format": {"encoding": "PCMU", "sample_rate": 8000}},
            }
        ).decode(),
        0.0,
    )
    session.ai_opened(0.0)
    return session


def ai_audio(actions: list) -> list[bytes]:
    return [
        base64.b64decode(orjson.loads(a.data)["media"]["payload"])
        for a in actions
        if isinstance(a, Send) and a.leg == "ai" and orjson.loads(a.data)["event"] == "media"
    ]


def test_session_conceals_a_lost_frame_with_silence(specs: SpecSet) -> None:
    session = telnyx_session(specs)
    out = []
    frames = {seq: bytes([seq]) * 160 for seq in range(2, 12)}
    for seq in (2, 3, 5, 6, 7, 8, 9, 10, 11):  # 4 never comes
        out += session.receive_telephony(media(seq, frames[seq]), 0.1)
    audio = ai_audio(out)
    assert audio[:2] == [frames[2], frames[3]]
    assert audio[2] == b"\xff" * 160  # mu-law silence of the same length, in its place
    assert audio[3:] == [frames[s] for s in range(5, 12)]  # past the gap nothing waits
    gaps = [a for a in out if isinstance(a, Notice) and a.code == "media.gap"]
    assert len(gaps) == 1 and "concealed with silence" in gaps[0].message
    session.release()


def test_frames_still_held_at_the_end_go_out_before_the_hangup(specs: SpecSet) -> None:
    session = telnyx_session(specs)
    out = session.receive_telephony(media(3, b"\x03" * 160), 0.1)  # 2 is late...
    assert ai_audio(out) == []
    end = session.receive_telephony('{"event": "stop", "sequence_number": "4", "stream_id": "S"}', 0.2)
    sent = [orjson.loads(a.data)["event"] for a in end if isinstance(a, Send) and a.leg == "ai"]
    assert ai_audio(end) == [b"\x03" * 160] and sent[-1] == "hangup"
    session.release()


def test_platforms_without_reorder_build_no_buffer(specs: SpecSet) -> None:
    session = CallSession(specs, CallRoute("twilio"), AITarget(specs.ai_providers["default"]))
    assert session.audio.reorder is None
    session.release()
