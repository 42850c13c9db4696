"""``CallSession.urgent``: a barge-in hands the platform's clear over the moment it is made.

The recorded Twilio barge-in (tests/vectors/twilio/bargein.jsonl) is replayed twice, without
the hook and with one that records what it is handed; in execution order, the two runs must
give exactly the same actions, and the hand-over must end with the clear and come before the
marks the barge-in settles.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import engine.replay
from engine.core.commands import Command, Send
from engine.core.session import CallRoute, CallSession
from engine.replay import read_transcript, replay
from engine.language.loader import SpecSet
from tests.conftest import VECTORS

BARGEIN = VECTORS / "twilio" / "bargein.jsonl"


def replayed(specs: SpecSet) -> list[Command]:
    return [action for step in replay(specs, "twilio", read_transcript(BARGEIN)) for action in step.actions]


def test_handed_over_and_returned_actions_are_the_plain_run_in_order(
    specs: SpecSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = replayed(specs)
    executed: list[Command] = []
    handed: list[list[Command]] = []

    def hand_over(actions: list[Command]) -> None:
        handed.append(list(actions))
        executed.extend(actions)

    def hooked(*args: Any, **kwargs: Any) -> CallSession:
        # (a factory, not a subclass: CallSession may be a compiled class, see engine.native)
        session = CallSession(*args, **kwargs)
        session.urgent = hand_over
        return session

    monkeypatch.setattr(engine.replay, "CallSession", hooked)
    for step in replay(specs, "twilio", read_transcript(BARGEIN)):
        executed.extend(step.actions)

    assert executed == plain
    (batch,) = handed  # one clear in the transcript, one hand-over
    last = batch[-1]
    assert isinstance(last, Send) and last.leg == "telephony" and orjson.loads(last.data)["event"] == "clear"
    at = next(i for i, action in enumerate(executed) if action is last)
    marks = [
        i
        for i, action in enumerate(executed)
        if isinstance(action, Send) and action.leg == "ai" and orjson.loads(action.data)["event"] == "mark"
    ]
    assert marks and all(i > at for i in marks)  # settled (as cleared) after the clear went


def test_release_drops_the_hook(specs: SpecSet) -> None:
    session = CallSession(specs, CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123"))
    session.urgent = lambda actions: None
    session.release()
    assert session.urgent is None
