"""The implementations of the protocol's named actions and guards, and its violation policies.

``specs/protocol.yaml`` names actions (``open_ai_leg``, ``barge_in``, ...) and guards
(``digit_valid``, ...); :mod:`engine.language.vocabulary` declares the names, and this module
registers one function for each in :data:`BEHAVIOURS`. The protocol compiler binds them into
each leg's shared ``transitions`` Machine, together with a callback per violation policy, so
the Machine is the one interpreter of the call's rules: a trigger runs the transition's guard,
its actions and the entered state's ``on_enter`` actions, or the policy of a pair that is not
legal (or whose guard said no).

Every callback is called as ``callback(call, leg, fields)``: the call's session, the leg the
event arrived on, and the event's canonical fields. Actions write their commands to the
call's outbox; an action that fails with a :class:`~engine.errors.CallbridgeError` becomes an
``error.<action>`` notice and the call goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.core.commands import AI, OpenLeg
from engine.core.legs import Leg
from engine.errors import CallbridgeError
from engine.language.protocol import Behaviours, Policy

if TYPE_CHECKING:
    from engine.core.session import CallSession

Fields = Mapping[str, Any]
ActionFn = Callable[["CallSession", Leg, Fields], None]
GuardFn = Callable[["CallSession", Leg, Fields], bool]

#: the AI Provider protocol's hangup reasons; anything else a platform says becomes NORMAL_CLEARING
HANGUP_REASONS = frozenset({"NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER", "CALL_REJECTED", "ORIGINATOR_CANCEL"})
DTMF_DIGITS = frozenset("0123456789*#ABCD")

ACTIONS: dict[str, ActionFn] = {}
GUARDS: dict[str, GuardFn] = {}


def action(name: str) -> Callable[[ActionFn], ActionFn]:
    """Register ``fn`` as the protocol action ``name`` (its errors become notices)."""

    def register(fn: ActionFn) -> ActionFn:
        def run(call: CallSession, leg: Leg, fields: Fields) -> None:
            try:
                fn(call, leg, fields)
            except CallbridgeError as exc:
                call.outbox.note(f"error.{name}", leg.name, str(exc), "error")

        run.__name__ = run.__qualname__ = name
        ACTIONS[name] = run
        return fn

    return register


def guard(name: str) -> Callable[[GuardFn], GuardFn]:
    """Register ``fn`` as the protocol guard ``name``."""

    def register(fn: GuardFn) -> GuardFn:
        GUARDS[name] = fn
        return fn

    return register


def violation(kind: str, policy: Policy, event: str, guard_name: str | None) -> ActionFn | None:
    """The callback the Machine runs for a (state, event) pair's policy; ``None`` for ``ignore``.

    ``kind`` is ``out_of_order`` (the pair is not legal) or ``guard`` (a guard said no)."""
    if policy.kind == "ignore":
        return None

    def refused(call: CallSession, leg: Leg, fields: Fields) -> None:
        detail = f"{event} in state {leg.state}" + (f": {guard_name} said no" if guard_name else "")
        refuse(call, leg, kind, policy, detail)

    refused.__name__ = refused.__qualname__ = f"{policy}"
    return refused


def refuse(call: CallSession, leg: Leg, kind: str, policy: Policy, detail: str) -> None:
    """Apply a violation policy: count and log it, answer with an error, or close the leg."""
    if policy.kind == "ignore":
        return
    outbox = call.outbox
    call.stats["violations"] += 1
    outbox.note(
        f"violation.{kind}",
        leg.name,
        f"{detail} ({kind}; policy {policy})",
        "warning",
        {"policy": policy.kind, "state": leg.state},
    )
    if policy.kind == "reject" and "error" in leg.peer.templates:
        outbox.send(leg, "error", {"error": detail, "reason": kind})
    elif policy.kind == "close":
        reason = policy.reason or detail
        if leg is call.tel:
            call.hangup_reason = "NORMAL_CLEARING"
        outbox.close(leg, policy.close_code, reason)
        call.fire(leg, "hangup_sent", {"close_code": policy.close_code, "reason": reason})


# ---------------------------------------------------------------------- guards


@guard("media_format_supported")
def media_format_supported(call: CallSession, leg: Leg, fields: Fields) -> bool:
    """The start message's media format is one the platform spec accepts."""
    why = call.audio.accept_platform_format(fields)
    if why is not None:
        call.outbox.note("start.format", leg.name, why, "warning")
    return why is None


@guard("digit_valid")
def digit_valid(call: CallSession, leg: Leg, fields: Fields) -> bool:
    """The digit is one of 0-9, *, #, A-D."""
    return str(fields.get("digit", "")).upper() in DTMF_DIGITS


@guard("mark_pending")
def mark_pending(call: CallSession, leg: Leg, fields: Fields) -> bool:
    """The mark is one callbridge sent and has not settled yet."""
    return call.audio.ledger.is_pending(str(fields.get("mark", "")))


# ---------------------------------------------------------------------- actions: the call's life


@action("open_ai_leg")
def open_ai_leg(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Fix the call's formats and context from the caller's start, then ask for the AI leg."""
    call.begin(fields)
    ai = call.ai
    target = call.ai_target
    websocket = ai.peer.websocket
    assert websocket is not None
    headers = target.headers if target.headers is not None else websocket.headers
    call.outbox.items.append(
        OpenLeg(AI, target.url or websocket.url, MappingProxyType(dict(headers)), websocket.subprotocols)
    )
    call.fire(ai, "dial", {})


@action("send_ai_start")
def send_ai_start(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Introduce the call to the AI provider (its start message)."""
    ai = call.ai
    call.outbox.send(ai, "start", {})
    call.outbox.note(
        "call.started",
        AI,
        f"bridged {call.route.provider} call to {ai.peer.name}",
        "info",
        {"caller": ai.ctx.get("caller_number"), "callee": ai.ctx.get("callee_number")},
    )


@action("flush_early_audio")
def flush_early_audio(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Send the AI the caller audio that arrived while its leg was opening."""
    call.audio.flush_early()


@action("hangup_ai")
def hangup_ai(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Send the AI its hangup with a reason, then close the AI leg."""
    ai = call.ai
    if ai.finished:
        return
    call.audio.flush_reorder()
    reason = str(fields.get("reason") or "").upper().replace(" ", "_")
    call.hangup_reason = reason if reason in HANGUP_REASONS else "NORMAL_CLEARING"
    hangup = ai.peer.hangup
    if ai.live:
        call.outbox.send(ai, hangup.send or "hangup", {"reason": call.hangup_reason})
    call.outbox.close(ai, hangup.close_code, hangup.close_reason)
    call.fire(ai, "hangup_sent", {"reason": call.hangup_reason})


@action("hangup_telephony")
def hangup_telephony(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Send the platform its own hangup (where its spec has one) and close the caller's leg."""
    tel = call.tel
    if tel.finished or tel.close_sent:
        return
    hangup = tel.peer.hangup
    reason = fields.get("reason") or "NORMAL_CLEARING"
    if hangup.send is not None:
        call.outbox.send(tel, hangup.send, {"reason": reason})
    # The platform gets its own close code, whatever ended the other leg (an AI's 1011 is the
    # AI's business, not the caller's).
    call.outbox.close(tel, hangup.close_code, hangup.close_reason)
    call.fire(tel, "hangup_sent", {"reason": reason})


@action("close_telephony")
def close_telephony(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Close the platform's WebSocket (a timer or policy that closes brings its code and reason)."""
    hangup = call.tel.peer.hangup
    if fields.get("close_code"):
        call.outbox.close(call.tel, int(fields["close_code"]), str(fields.get("reason") or hangup.close_reason))
    else:
        call.outbox.close(call.tel, hangup.close_code, hangup.close_reason)


@action("close_ai")
def close_ai(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Close the AI provider's WebSocket."""
    hangup = call.ai.peer.hangup
    code = fields.get("close_code") or hangup.close_code
    call.outbox.close(call.ai, int(code), str(fields.get("reason") or hangup.close_reason))


# ---------------------------------------------------------------------- actions: audio and control


@action("forward_audio")
def forward_audio(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Transcode caller audio to the AI's format and send it (the media path)."""
    call.audio.forward_media(fields)


@action("play_audio")
def play_audio(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Queue the AI's audio for paced playout (the media path)."""
    call.play(fields)


def relay_digit(call: CallSession, to: Leg, fields: Fields, dropped: str) -> None:
    """Send a keypad digit to the leg ``to`` while it is live; ``dropped`` says why when its spec
    has no dtmf message."""
    values = {"digit": str(fields["digit"]).upper(), "duration": fields.get("duration")}
    if to.live and not call.outbox.send(to, "dtmf", values):
        call.outbox.note("dtmf.unsupported", to.name, f"{to.peer.name} {dropped}", "warning")


@action("forward_dtmf")
def forward_dtmf(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Send the caller's keypad digit to the AI."""
    relay_digit(call, call.ai, fields, "has no dtmf message; digit dropped")


@action("send_dtmf")
def send_dtmf(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Play the AI's digit to the caller (where the platform spec has a dtmf message)."""
    relay_digit(call, call.tel, fields, "cannot play digits; dropped")


@action("resolve_mark")
def resolve_mark(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Settle a mark the platform echoed."""
    call.audio.resolve_mark(str(fields["mark"]), str(fields.get("mark_status", "")))


@action("confirm_clear")
def confirm_clear(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Note the platform's acknowledgement of a clear."""
    call.outbox.note("clear.confirmed", leg.name, "platform confirmed the clear", "debug")


@action("barge_in")
def barge_in(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Drop all unplayed audio, send the platform's clear, settle pending marks as cleared."""
    call.audio.barge_in(call.now)


@action("queue_mark")
def queue_mark(call: CallSession, leg: Leg, fields: Fields) -> None:
    """Place a mark after the audio queued so far; the AI is answered when it is played."""
    call.audio.queue_mark(str(fields["mark"]), call.now)


BEHAVIOURS = Behaviours(
    actions=MappingProxyType(ACTIONS), guards=MappingProxyType(GUARDS), violation=violation
)
"""What the protocol compiler binds into each leg's Machine."""
