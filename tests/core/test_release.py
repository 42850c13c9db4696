"""A released session is freed by reference counting alone: no reference cycle outlives the
call, so ended calls never pile up for a full garbage collection (which stalls every live call
while it walks them)."""

from __future__ import annotations

import gc
from collections import Counter

import numpy as np

from engine.core.numbers import to_e164
from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet


def cyclic_garbage(run) -> Counter[str]:
    """Types of the objects that only the cycle collector would free after ``run()``."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def a_whole_call(specs: SpecSet, caller: str) -> None:
    session = CallSession(specs, CallRoute("twilio", virtual_number="+14155550100", caller_id=caller),
                          AITarget(specs.ai_providers["default"]), call_id="release")
    session.receive_event("telephony", "connected", {}, 0.0)
    session.receive_event("telephony", "start", {"stream_id": "MZ1", "call_id": "CA1"}, 0.0)
    session.ai_opened(0.01)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(480) / 8000)).astype(np.uint8).tobytes()
    for i in range(5):
        session.receive_event("telephony", "media", {"audio": tone[:160]}, 0.02 * i)
        session.receive_event("ai", "media", {"audio": bytes(960)}, 0.02 * i)
    session.receive_event("ai", "clear", {}, 0.12)
    session.receive_event("telephony", "stop", {}, 0.2)
    session.ai_closed(0.21)
    session.telephony_closed(0.22)
    assert session.finished
    session.release()
    assert not hasattr(session.tel, "session") and not hasattr(session.ai, "session")  # no back-reference


def test_a_released_call_leaves_no_reference_cycle(specs: SpecSet) -> None:
    a_whole_call(specs, "+14155550123")  # warm: first-use caches are not the call's garbage
    assert cyclic_garbage(lambda: a_whole_call(specs, "+14155550124")) == Counter()


def test_a_caller_id_that_is_not_a_number_leaves_no_reference_cycle() -> None:
    # phonenumbers keeps the exception it raises in a local of the raising frame (a cycle)
    assert cyclic_garbage(lambda: to_e164("anonymous-8f3a")) == Counter()
    assert to_e164("anonymous-8f3b") == "anonymous-8f3b"


def test_a_released_session_does_nothing_on_a_late_event(specs: SpecSet) -> None:
    session = CallSession(specs, CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123"),
                          AITarget(specs.ai_providers["default"]), call_id="late")
    session.receive_event("telephony", "connected", {}, 0.0)
    session.receive_event("telephony", "start", {"stream_id": "MZ1", "call_id": "CA1"}, 0.0)
    session.release()
    assert session.receive_event("telephony", "stop", {}, 0.1) == []  # its legs' actions no longer run
