"""The end of an AI utterance must reach the caller even where the platform has a minimum
chunk size: the framer's partial chunk goes out, padded with silence, once holding it longer
would leave the caller in silence."""

from __future__ import annotations

import base64

import numpy as np
import orjson

from engine.core.commands import Send
from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet


def sent_media(actions: list) -> list[bytes]:
    out = []
    for action in actions:
        if isinstance(action, Send) and action.leg == "telephony":
            message = orjson.loads(action.data)
            if message.get("event") == "media":
                out.append(base64.b64decode(message["media"]["payload"]))
    return out


def test_a_short_utterance_is_not_held_back_by_the_minimum_chunk(specs: SpecSet) -> None:
    session = CallSession(specs, CallRoute("exotel", virtual_number="+918047491899", caller_id="+919876543210"),
                          AITarget(specs.ai_providers["default"]), call_id="tail")
    session.receive_event("telephony", "connected", {}, 0.0)
    session.receive_event("telephony", "start", {"stream_id": "MZ1", "call_id": "CA1"}, 0.0)
    session.ai_opened(0.01)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(2880) / 24000)).astype("<i2").tobytes()  # 120 ms
    actions = session.receive_event("ai", "media", {"audio": tone}, 0.02)
    assert sent_media(actions) == []  # 120 ms < Exotel's 3.2 kB (200 ms) minimum: held for now
    deadline = session.next_deadline()
    assert deadline is not None and deadline <= 0.02 + 0.1
    chunks = sent_media(session.on_timer(deadline))
    assert [len(c) for c in chunks] == [3200]  # one legal chunk: the speech, then silence
    pcm = np.frombuffer(chunks[0], "<i2")
    assert np.abs(pcm[:900]).max() > 4000  # the utterance
    assert np.abs(pcm[1000:]).max() == 0  # the padding
    session.release()
