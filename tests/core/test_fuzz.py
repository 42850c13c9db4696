"""Random and mutated messages on both legs: only documented outcomes.

Whatever arrives, in whatever order, every public call of ``CallSession`` returns a list of
actions (or raises nothing at all); violations come out as ``violation.*`` notices; closing
both sockets always ends the call; and the session keeps its own bounded state.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.commands import CloseLeg, Notice, OpenLeg, Reschedule, Send
from engine.core.session import AITarget, CallRoute, CallSession
from engine.language.loader import SpecSet
from tests.conftest import VECTORS

TWILIO = [json.loads(line) for line in (VECTORS / "twilio" / "call.jsonl").read_text().splitlines()]
AI_MESSAGES = [
    {"event": "media", "media": {"payload": base64.b64encode(b"\x00\x01" * 480).decode()}},
    {"event": "clear"},
    {"event": "mark", "mark": {"name": "m"}},
    {"event": "hangup", "hangup": {"reason": "NORMAL_CLEARING"}},
]
ACTION_TYPES = (Send, OpenLeg, CloseLeg, Notice, Reschedule)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def mutate(message: dict[str, Any], data: st.DataObject) -> Any:
    """Drop a key, replace a value with any JSON, or nest garbage somewhere."""
    out = json.loads(json.dumps(message))
    node = out
    keys = list(node)
    while keys and data.draw(st.booleans(), label="descend"):
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], dict) and node[key]:
            node = node[key]
            keys = list(node)
        else:
            break
    if not keys:
        return out
    key = data.draw(st.sampled_from(keys))
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        del node[key]
    else:
        node[key] = data.draw(json_values)
    return out


def frames(pool: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        kind = draw(st.integers(0, 9))
        if kind <= 4:
            return json.dumps(draw(st.sampled_from(pool)))
        if kind <= 7:
            return json.dumps(mutate(draw(st.sampled_from(pool)), draw(st.data())))
        if kind == 8:
            return draw(st.text(max_size=40))
        return draw(st.binary(max_size=64))

    return build()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("tel"), frames(TWILIO)),
        st.tuples(st.just("ai"), frames(AI_MESSAGES)),
        st.tuples(st.sampled_from(["ai_opened", "ai_failed", "ai_closed", "telephony_closed", "timer"]), st.none()),
    ),
    max_size=40,
)


def check(actions: Any) -> None:
    assert isinstance(actions, list)
    for action in actions:
        assert isinstance(action, ACTION_TYPES)
        if isinstance(action, Notice) and action.code.startswith("error."):
            raise AssertionError(f"engine error, not a documented outcome: {action}")


def run(specs: SpecSet, ai: str, ops: list[tuple[str, Any]]) -> None:
    session = CallSession(
        specs,
        CallRoute("twilio", virtual_number="+14155550100", caller_id="+14155550123"),
        AITarget(specs.ai_providers[ai]),
        call_id="fuzz",
    )
    now = 0.0
    try:
        for op, payload in ops:
            now += 0.02
            if op == "tel":
                check(session.receive_telephony(payload, now))
            elif op == "ai":
                check(session.receive_ai(payload, now))
            elif op == "timer":
                deadline = session.next_deadline()
                if deadline is not None:
                    now = max(now, deadline)
                check(session.on_timer(now))
            else:
                check(getattr(session, op)(now))
        check(session.telephony_closed(now + 1))
        check(session.ai_closed(now + 1))
        assert session.finished
        assert session.playout.queued_ms <= session.playout.max_buffer_ms
    finally:
        session.release()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_and_mutated_messages_g711_ai(specs: SpecSet, ops: list[tuple[str, Any]]) -> None:
    run(specs, "default_ulaw", ops)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_and_mutated_messages_pcm16_ai(specs: SpecSet, ops: list[tuple[str, Any]]) -> None:
    run(specs, "default", ops)
