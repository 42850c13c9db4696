"""Every (state, event) pair of protocol.yaml, for both legs, against its declared outcome.

The expectations come from the compiled table (the protocol file), not from the engine: for a
transition the leg must land in its declared state (and, for a guarded one, the guard's
``else`` policy must apply when the guard says no); for a policy, ignore must be silent, warn
must produce exactly one counted violation, close must close that leg with the declared code.
"""

from __future__ import annotations

from collections import deque

import pytest

from engine.core.commands import AI, TELEPHONY, CloseLeg, Notice
from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet
from engine.language.protocol import CompiledLeg, Policy, Transition

MEDIA = b"\xff" * 160

#: canonical fields that satisfy each guard / make each event well-formed
GOOD = {
    "start": {"stream_id": "MZ1", "call_id": "CA1"},
    "media": {"audio": MEDIA},
    "dtmf": {"digit": "5"},
    "mark": {"mark": "<pending>"},
    "stop": {"reason": "caller hung up"},
    "timeout": {"reason": "test timer", "close_code": 1008},
}
#: fields that make each guard say no
BAD = {
    "start": {"stream_id": "MZ1", "encoding": "audio/x-l16", "sample_rate": 16000},
    "dtmf": {"digit": "X"},
    "mark": {"mark": "never-sent"},
}


def path_to(leg: CompiledLeg, start: str, target: str) -> list[str]:
    """Shortest event sequence from ``start`` to ``target`` over unguarded-or-satisfiable moves."""
    queue = deque([(start, [])])
    seen = {start}
    while queue:
        state, events = queue.popleft()
        if state == target:
            return events
        for (src, event), entry in leg.table.items():
            if src == state and isinstance(entry, Transition) and entry.dest and entry.dest not in seen:
                seen.add(entry.dest)
                queue.append((entry.dest, [*events, event]))
    raise AssertionError(f"{target} unreachable")


def new_session(specs: SpecSet) -> CallSession:
    return CallSession(
        specs,
        CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123"),
        AITarget(specs.ai_providers["default_ulaw"]),
        call_id="table",
    )


def feed(session: CallSession, leg: str, event: str, fields: dict | None = None) -> list:
    fields = dict(GOOD.get(event, {}) if fields is None else fields)
    if fields.get("mark") == "<pending>":
        fields["mark"] = session.ledger.create("m", 0.0).wire
    return session.receive_event(leg, event, fields, session.now + 0.001)


def drive(session: CallSession, leg: str, state: str) -> None:
    protocol = session.specs.protocol
    if leg == AI and state != protocol.legs[AI].initial:
        for event in ("connected", "start"):
            feed(session, TELEPHONY, event)
        assert session.ai.state == "connecting" or state == "idle"
    model = session.tel if leg == TELEPHONY else session.ai
    for event in path_to(protocol.legs[leg], model.state, state):
        feed(session, leg, event)
    assert model.state == state, f"could not drive the {leg} leg to {state}"


def pairs(specs_: SpecSet) -> list[tuple[str, str, str]]:
    return [
        (leg, state, event)
        for leg, compiled in specs_.protocol.legs.items()
        for state in compiled.states
        for event in compiled.events
    ]


def _specs() -> SpecSet:
    from engine.language.loader import load_specs
    from tests.conftest import ROOT

    return load_specs(ROOT / "specs")


ALL_PAIRS = pairs(_specs())


def check_policy(actions: list, policy: Policy, leg: str, before: str, after: str) -> None:
    violations = [a for a in actions if isinstance(a, Notice) and a.code.startswith("violation.")]
    if policy.kind == "ignore":
        assert violations == [] and after == before
    elif policy.kind in ("warn", "reject"):
        assert len(violations) == 1 and violations[0].level == "warning" and violations[0].leg == leg
        assert after == before
    else:
        assert any(isinstance(a, CloseLeg) and a.leg == leg and a.code == policy.close_code for a in actions)


@pytest.mark.parametrize(("leg", "state", "event"), ALL_PAIRS, ids=["-".join(pair) for pair in ALL_PAIRS])
def test_state_event_pair(specs: SpecSet, leg: str, state: str, event: str) -> None:
    session = new_session(specs)
    drive(session, leg, state)
    model = session.tel if leg == TELEPHONY else session.ai
    entry = specs.protocol.legs[leg].table[(state, event)]
    actions = feed(session, leg, event)
    if isinstance(entry, Policy):
        check_policy(actions, entry, leg, state, model.state)
    else:
        assert model.state == (entry.dest or state), actions
        assert not any(isinstance(a, Notice) and a.code.startswith("violation.") for a in actions), actions
        if entry.guard and event in BAD:
            other = new_session(specs)
            drive(other, leg, state)
            check_policy(
                feed(other, leg, event, BAD[event]),
                entry.otherwise,
                leg,
                state,
                (other.tel if leg == TELEPHONY else other.ai).state,
            )
    session.release()


def test_table_is_complete(specs: SpecSet) -> None:
    for leg in specs.protocol.legs.values():
        assert {(s, e) for s in leg.states for e in leg.events} == set(leg.table)


def test_media_never_fires_a_trigger(specs: SpecSet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Media pairs are in the Machine like every pair, but where media is legal the fast path
    reads the set derived from it and never fires."""
    tel = specs.protocol.legs[TELEPHONY]
    for leg in specs.protocol.legs.values():
        legal = {s for s in leg.states if isinstance(leg.table[(s, "media")], Transition)}
        assert leg.media_states == legal and legal
    session = new_session(specs)
    drive(session, TELEPHONY, tel.first_state("live"))

    def no_trigger(*args: object, **kwargs: object) -> bool:
        raise AssertionError("a media frame fired a trigger")

    monkeypatch.setattr(tel.machine.events["media"], "trigger", no_trigger)
    actions = feed(session, TELEPHONY, "media")
    assert not any(isinstance(a, Notice) and a.level in ("warning", "error") for a in actions), actions
    session.release()
