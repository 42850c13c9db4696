"""The core's benchmark cases, shared by the pytest-benchmark suite and the ratio report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import orjson

from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet, load_specs

ROOT = Path(__file__).resolve().parent.parent
LINES = (ROOT / "tests" / "vectors" / "twilio" / "call.jsonl").read_text().splitlines()
CONNECTED, START = LINES[0], LINES[1]
MEDIA = next(line for line in LINES if json.loads(line)["event"] == "media")
ROUTE = CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123")


def specs() -> SpecSet:
    return load_specs(ROOT / "specs")


def bare_parse_dump() -> Callable[[], object]:
    """The floor: parse the platform's message and dump one of the same size."""
    message = MEDIA

    def run() -> object:
        return orjson.dumps(orjson.loads(message))

    return run


def streaming_session(spec_set: SpecSet, ai: str) -> CallSession:
    session = CallSession(spec_set, ROUTE, AITarget(spec_set.ai_providers[ai]), call_id="bench")
    session.receive_telephony(CONNECTED, 0.0)
    session.receive_telephony(START, 0.0)
    session.ai_opened(0.0)
    return session


def media_through_core(spec_set: SpecSet, ai: str = "default_ulaw") -> Callable[[], object]:
    """One Twilio media message in, one AI media message out (pass-through audio)."""
    session = streaming_session(spec_set, ai)
    receive = session.receive_telephony
    message = MEDIA

    def run() -> object:
        return receive(message, 1.0)

    return run


def call_setup(spec_set: SpecSet, ai: str = "default_ulaw") -> Callable[[], object]:
    """A call from nothing to bridged: session, handshake, start, AI leg open (start sent), release."""
    target = AITarget(spec_set.ai_providers[ai])

    def run() -> object:
        session = CallSession(spec_set, ROUTE, target, call_id="bench")
        session.receive_telephony(CONNECTED, 0.0)
        session.receive_telephony(START, 0.0)
        out = session.ai_opened(0.0)
        session.release()
        return out

    return run


def bargein_through_core(spec_set: SpecSet, ai: str = "default", rounds: int = 400) -> list[float]:
    """Seconds per AI ``clear`` (in) to the platform's ``clear`` (out), each met with 200 ms of
    audio released to the platform and 800 ms still queued, as a barge-in mid-utterance is.
    Only the clear is timed; the burst before it is set-up."""
    import base64
    import time

    session = streaming_session(spec_set, ai)
    frame = base64.b64encode(b"\x10\x00" * 480).decode()
    media = f'{{"event":"media","media":{{"payload":"{frame}"}}}}'
    clear = '{"event":"clear"}'
    times = []
    now = 1.0
    for _ in range(rounds):
        now += 1.0
        for _ in range(50):
            session.receive_ai(media, now)
        started = time.perf_counter()
        session.receive_ai(clear, now)
        times.append(time.perf_counter() - started)
    return times
