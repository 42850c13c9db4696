"""Replay a recorded transcript through a ``CallSession`` and report what the engine did.

A transcript is JSON Lines. Each line is either a bare platform message (a JSON object, as the
platform sent it), or an envelope::

    {"t": 0.02, "leg": "telephony", "frame": {...}}      a text frame (object or string)
    {"t": 0.04, "leg": "telephony", "binary": "<b64>"}   a binary frame
    {"t": 0.05, "leg": "ai", "frame": {...}}             a frame from the AI provider
    {"t": 1.00, "leg": "ai", "internal": "closed"}       opened | failed | closed
    {"t": 9.00, "leg": "telephony", "internal": "closed"}

Bare lines are spaced 20 ms apart. Unless the transcript says otherwise, the AI leg opens as
soon as the engine asks for it. Timers fire between lines as their deadlines pass.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.core.commands import CloseLeg, Command, Notice, OpenLeg, Reschedule, Send
from engine.core.session import AITarget, CallRoute, CallSession
from engine.errors import UsageError
from engine.language.loader import SpecSet


@dataclass
class Step:
    """One input and what came of it."""

    index: int
    t: float
    leg: str
    kind: str  # frame | binary | internal | timer
    summary: str
    events: list[str]
    states_before: tuple[str, str]
    states_after: tuple[str, str]
    actions: list[Command] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    t: float
    leg: str
    kind: str
    data: Any


def read_transcript(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    t = 0.0
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            # A line that is not JSON is replayed as a raw (malformed) platform frame.
            entries.append(Entry(t, "telephony", "frame", line))
            t += 0.02
            del exc
            continue
        if isinstance(obj, dict) and "leg" in obj and ({"frame", "binary", "internal"} & obj.keys()):
            t = float(obj.get("t", t))
            leg = obj["leg"]
            if leg not in ("telephony", "ai"):
                raise UsageError(f"{path}:{number}: leg must be telephony or ai, not {leg!r}")
            if "internal" in obj:
                entries.append(Entry(t, leg, "internal", obj["internal"]))
            elif "binary" in obj:
                entries.append(Entry(t, leg, "binary", base64.b64decode(obj["binary"])))
            else:
                frame = obj["frame"]
                entries.append(
                    Entry(t, leg, "frame", frame if isinstance(frame, str) else orjson.dumps(frame).decode())
                )
        else:
            entries.append(Entry(t, "telephony", "frame", line))
            t += 0.02
    return entries


def _summary(entry: Entry) -> str:
    if entry.kind == "binary":
        return f"binary {len(entry.data)} B"
    if entry.kind == "internal":
        return f"<{entry.data}>"
    text = entry.data
    return text if len(text) <= 90 else text[:87] + "..."


def replay(
    specs: SpecSet,
    provider: str,
    entries: Iterable[Entry],
    *,
    ai: str = "default",
    auto_open_ai: bool = True,
    route: CallRoute | None = None,
) -> Iterator[Step]:
    """Run ``entries`` through a fresh session, yielding one :class:`Step` per input or timer."""
    if provider not in specs.providers:
        raise UsageError(f"unknown provider {provider!r} (known: {', '.join(sorted(specs.providers))})")
    if ai not in specs.ai_providers:
        raise UsageError(f"unknown AI provider {ai!r} (known: {', '.join(sorted(specs.ai_providers))})")
    session = CallSession(
        specs,
        route or CallRoute(provider, virtual_number="+14155550100", caller_id="+14155550123"),
        AITarget(specs.ai_providers[ai]),
        call_id="replay",
    )
    index = 0
    explicit_ai = False
    entries = list(entries)
    explicit_ai = any(e.leg == "ai" and e.kind == "internal" and e.data in ("opened", "failed") for e in entries)

    closed_by_us = {"ai", "telephony"}

    def states() -> tuple[str, str]:
        return session.tel.state, session.ai.state

    def run(kind: str, leg: str, t: float, summary: str, call: Any) -> Step:
        nonlocal index
        before = states()
        notices_events: list[str] = []
        actions = call()
        index += 1
        step = Step(index, t, leg, kind, summary, notices_events, before, states(), list(actions))
        if auto_open_ai and not explicit_ai:
            # Stand in for the adapter: the AI answers, and a leg we close reports closed.
            pending = list(actions)
            while pending:
                action = pending.pop(0)
                more: list[Command] = []
                if isinstance(action, OpenLeg):
                    more = session.ai_opened(t)
                elif isinstance(action, CloseLeg) and action.leg in closed_by_us:
                    closed_by_us.discard(action.leg)
                    more = session.ai_closed(t) if action.leg == "ai" else session.telephony_closed(t)
                step.actions.extend(more)
                pending.extend(more)
            step.states_after = states()
        return step

    for entry in entries:
        deadline = session.next_deadline()
        while deadline is not None and deadline <= entry.t:
            yield run("timer", "-", deadline, "<timer>", lambda d=deadline: session.on_timer(d))
            deadline = session.next_deadline()
        if entry.kind == "internal":
            method = {
                ("ai", "opened"): session.ai_opened,
                ("ai", "failed"): session.ai_failed,
                ("ai", "closed"): session.ai_closed,
                ("telephony", "closed"): session.telephony_closed,
            }.get((entry.leg, entry.data))
            if method is None:
                raise UsageError(f"unknown internal event {entry.data!r} for the {entry.leg} leg")
            yield run("internal", entry.leg, entry.t, _summary(entry), lambda m=method, t=entry.t: m(t))
            continue
        receive = session.receive_telephony if entry.leg == "telephony" else session.receive_ai
        yield run(entry.kind, entry.leg, entry.t, _summary(entry), lambda r=receive, e=entry: r(e.data, e.t))
    # Let the call wind down: pending playout and timers (bounded).
    for _ in range(10_000):
        deadline = session.next_deadline()
        if deadline is None or session.finished:
            break
        yield run("timer", "-", deadline, "<timer>", lambda d=deadline: session.on_timer(d))
    session.release()


def describe_command(action: Command) -> str:
    if isinstance(action, Send):
        if action.binary:
            return f"send {action.leg}: binary {len(action.data)} B"
        text = action.data.decode(errors="replace")
        try:
            obj = orjson.loads(action.data)
            for key in ("event", "type", "command", "action"):
                if isinstance(obj, dict) and key in obj:
                    return f"send {action.leg}: {key}={obj[key]} ({len(action.data)} B)"
        except orjson.JSONDecodeError:
            pass
        return f"send {action.leg}: {text[:60]}"
    if isinstance(action, OpenLeg):
        return f"open {action.leg} leg: {action.url}"
    if isinstance(action, CloseLeg):
        return f"close {action.leg} leg: {action.code} {action.reason}"
    if isinstance(action, Reschedule):
        return "reschedule: the next deadline may be earlier"
    assert isinstance(action, Notice)
    return f"{action.level} {action.code}: {action.message}"


def step_json(step: Step) -> dict[str, Any]:
    out_actions = []
    for action in step.actions:
        if isinstance(action, Send):
            out_actions.append(
                {
                    "type": "send",
                    "leg": action.leg,
                    "binary": action.binary,
                    "data": base64.b64encode(action.data).decode() if action.binary else action.data.decode(),
                }
            )
        elif isinstance(action, OpenLeg):
            out_actions.append({"type": "open", "leg": action.leg, "url": action.url})
        elif isinstance(action, CloseLeg):
            out_actions.append({"type": "close", "leg": action.leg, "code": action.code, "reason": action.reason})
        elif isinstance(action, Notice):
            out_actions.append(
                {
                    "type": "notice",
                    "leg": action.leg,
                    "code": action.code,
                    "level": action.level,
                    "message": action.message,
                }
            )
    return {
        "index": step.index,
        "t": round(step.t, 6),
        "leg": step.leg,
        "input": step.summary,
        "states_before": {"telephony": step.states_before[0], "ai": step.states_before[1]},
        "states_after": {"telephony": step.states_after[0], "ai": step.states_after[1]},
        "actions": out_actions,
    }
