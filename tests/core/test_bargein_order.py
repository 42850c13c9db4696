"""A barge-in's platform ``clear`` is the first command it returns.

Every microsecond before the platform gets its clear is cut audio the caller may still hear, so
the adapter carries out commands in order and the core puts the clear first: before the mark
answers and notices the barge-in settles. The recorded Twilio barge-in
(tests/vectors/twilio/bargein.jsonl) is replayed through the core.
"""

from __future__ import annotations

import orjson

from engine.core.commands import Send
from engine.core.session import CallRoute, CallSession
from engine.language.loader import SpecSet
from engine.replay import read_transcript, replay
from tests.conftest import VECTORS

BARGEIN = VECTORS / "twilio" / "bargein.jsonl"


def event_of(command: object) -> str | None:
    if isinstance(command, Send) and not command.binary:
        return str(orjson.loads(command.data).get("event"))
    return None


def test_the_clear_comes_first_and_the_marks_it_settles_after_it(specs: SpecSet) -> None:
    steps = [step for step in replay(specs, "twilio", read_transcript(BARGEIN))]
    (step,) = [s for s in steps if any(event_of(c) == "clear" and c.leg == "telephony" for c in s.actions)]
    sends = [c for c in step.actions if isinstance(c, Send)]
    assert sends[0].leg == "telephony" and event_of(sends[0]) == "clear", step.actions
    marks = [c for c in sends if c.leg == "ai" and event_of(c) == "mark"]
    assert marks, step.actions  # the pending marks answered as cleared, after the clear


def test_the_session_has_no_side_channel(specs: SpecSet) -> None:
    session = CallSession(specs, CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123"))
    assert not hasattr(session, "urgent") and not hasattr(session, "deadline_changed")
    session.release()
