"""``CallSession``: one bridged call, sans-I/O.

Feed it what arrives and when; it returns what to do::

    session = CallSession(specs, route)
    commands = session.receive_telephony(text_or_bytes, now)   # a platform frame
    commands = session.receive_ai(text_or_bytes, now)          # an AI provider frame
    commands = session.ai_opened(now) / ai_failed(now, why) / ai_closed(now) / telephony_closed(now)
    deadline = session.next_deadline()                         # when to call on_timer, or None
    commands = session.on_timer(now)

Each call returns a list of :mod:`engine.core.commands` (send, open the AI leg, close a leg,
notices for logs and metrics, reschedule), in the order to carry them out. There are no
sockets, clocks, awaits or callbacks in here.

Theory of operation: the call has two :class:`~engine.core.legs.Leg` objects, each attached as
a model to its protocol leg's shared ``transitions`` Machine, which is the one interpreter of
the call's rules (:mod:`engine.language.protocol`). A decoded control event is fired on its
leg's Machine, which runs the protocol's guard, actions and policy for it
(:mod:`engine.core.control`). Media frames never fire a trigger: the leg's media states are a
set derived from the same Machine, so a frame costs a set lookup, its conversion
(:mod:`engine.core.audio`) and its rendering.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from math import inf
from types import MappingProxyType
from typing import Any

from engine.core import control
from engine.core.audio import AudioPath
from engine.core.commands import AI, TELEPHONY, CloseLeg, Command, Notice
from engine.core.legs import Leg, Outbox
from engine.core.numbers import to_e164
from engine.core.playout import MarkLedger, Playout
from engine.core.route import AITarget, CallRoute
from engine.dsp.formats import AudioFormat
from engine.errors import CallbridgeError, LocalProtocolError, ProtocolErrorKind, RemoteProtocolError, UsageError
from engine.language.loader import SpecSet

__all__ = ["AITarget", "CallRoute", "CallSession"]


class CallSession:
    """One bridged call. See the module docstring for the calling convention."""

    def __init__(
        self,
        specs: SpecSet,
        route: CallRoute,
        ai: AITarget | None = None,
        *,
        call_id: str | None = None,
        now: float = 0.0,
        playout_lead_ms: int | None = None,
    ) -> None:
        if route.provider not in specs.providers:
            raise LocalProtocolError(
                f"unknown provider {route.provider!r} (known: {', '.join(sorted(specs.providers))})"
            )
        self.specs = specs
        self.route = route
        self.call_id = call_id or uuid.uuid4().hex
        self.now = now
        self.started_at = now
        protocol = specs.protocol
        ai = ai or AITarget(specs.ai_providers["default"])
        self.ai_target = ai
        tel_env = {
            "query": dict(route.query),
            "path": route.parts(),
            "header": {k.lower(): v for k, v in route.headers.items()},
        }
        self.tel = Leg(protocol.legs[TELEPHONY], specs.providers[route.provider], tel_env)
        self.ai = Leg(protocol.legs[AI], ai.peer, {"query": {}, "path": {}, "header": {}})
        self.tel.compiled.machine.add_model(self.tel)
        self.ai.compiled.machine.add_model(self.ai)
        self._released = False
        self.outbox = Outbox()
        self.stats: dict[str, int] = {"violations": 0, "clears": 0, "marks_played": 0, "marks_cleared": 0}
        self.audio = AudioPath(self.tel, self.ai, self.outbox, self.stats, playout_lead_ms)
        self.start_fields: Mapping[str, Any] = MappingProxyType({})
        self._timers: dict[str, float] = {}
        self.hangup_reason = "NORMAL_CLEARING"
        self._sync_timers()

    # ------------------------------------------------------------------ what arrives

    def receive_telephony(self, message: str | bytes, now: float) -> list[Command]:
        """A frame from the platform (``str`` for text frames, ``bytes`` for binary)."""
        return self._receive(self.tel, message, now)

    def receive_ai(self, message: str | bytes, now: float) -> list[Command]:
        """A frame from the AI provider."""
        return self._receive(self.ai, message, now)

    def ai_opened(self, now: float) -> list[Command]:
        """The AI leg's WebSocket is open (after an :class:`~engine.core.commands.OpenLeg`)."""
        return self._internal(self.ai, "opened", now, {})

    def ai_failed(self, now: float, reason: str = "") -> list[Command]:
        """The AI leg could not be opened (every attempt failed); ``reason`` is logged."""
        out = self._internal(self.ai, "failed", now, {"reason": reason})
        message = f"AI provider unreachable: {reason}" if reason else "AI provider unreachable"
        out.insert(0, Notice("ai.connect_failed", AI, message, "warning", {}))
        return out

    def ai_closed(self, now: float, code: int | None = None) -> list[Command]:
        """The AI leg's WebSocket closed, from either side."""
        return self._internal(self.ai, "closed", now, {"close_code": code})

    def telephony_closed(self, now: float, code: int | None = None) -> list[Command]:
        """The platform's WebSocket closed, from either side."""
        return self._internal(self.tel, "closed", now, {"close_code": code})

    def receive_event(self, leg: str, event: str, fields: Mapping[str, Any], now: float) -> list[Command]:
        """Feed a canonical event directly, as if a peer message had decoded to it (conformance
        kits and table tests use this; adapters use ``receive_telephony``/``receive_ai``)."""
        target = self.tel if leg == TELEPHONY else self.ai
        if event == "media":
            self.now = now
            out = self.outbox.reset()
            self._media(target, fields, None)
            return out
        return self._internal(target, event, now, fields)

    def hang_up(self, now: float, reason: str = "NORMAL_CLEARING") -> list[Command]:
        """End the call from callbridge's side (drain, idle timeout, an operator): the AI gets
        its hangup with ``reason``, the platform its own hangup message (where its spec has one)
        and a close with the spec's code."""
        self.now = now
        out = self.outbox.reset()
        fields = {"reason": reason}
        control.ACTIONS["hangup_ai"](self, self.ai, fields)
        control.ACTIONS["hangup_telephony"](self, self.tel, fields)
        self._sync_timers()
        return out

    def retarget_ai(self, target: AITarget) -> None:
        """Point a call whose AI leg has not opened yet at another AI provider (a fallback).

        The next ``OpenLeg`` is the adapter's to make; audio formats, templates and the start
        message follow the new provider's spec. Refused (:class:`UsageError`) once the AI leg
        is up or gone."""
        ai = self.ai
        if not (ai.in_role("idle") or ai.in_role("opening")):
            raise UsageError(f"cannot retarget the AI leg in state {ai.state}: only before it opens")
        self.ai_target = target
        ai.peer = target.peer
        self.audio.retarget(target.peer, self.call_id)
        if self.audio.started:  # the call has started: its context follows the new provider
            fmt = self.audio.ai_format
            for ctx in (self.tel.ctx, ai.ctx):
                ctx["ai_encoding"] = target.peer.ai_format_name
                ctx["ai_sample_rate"] = fmt.sample_rate
            ai.ctx["out_encoding"] = fmt.encoding
            ai.ctx["out_sample_rate"] = fmt.sample_rate

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """The next time :meth:`on_timer` has work, or ``None``."""
        best = min(min(self._timers.values(), default=inf), self.audio.next_deadline(self.now))
        return None if best == inf else best

    def on_timer(self, now: float) -> list[Command]:
        """Run what is due at ``now``: the protocol's timers, paced playout, mark timeouts."""
        self.now = now
        out = self.outbox.reset()
        for name, deadline in list(self._timers.items()):
            if deadline <= now and name in self._timers:
                del self._timers[name]
                timer = next(t for t in self.specs.protocol.timers if t.name == name)
                leg = self.tel if timer.leg == TELEPHONY else self.ai
                self.outbox.note("timer." + name, leg.name, timer.reason, "warning")
                self.fire(leg, "timeout", {"reason": timer.reason, "close_code": timer.close_code})
        try:
            self.audio.on_timer(now)
        except CallbridgeError as exc:  # e.g. a template needing a value this call lacks
            self.audio.playout.clear(now, platform_flushes=False)
            self.outbox.note("error.playout", TELEPHONY, str(exc), "error")
        self._sync_timers()
        return out

    # ------------------------------------------------------------------ what the adapter asks

    def ai_leg_in(self, role: str) -> bool:
        """Whether the AI leg's state has ``role`` in the protocol (``"opening"``, ``"live"``, ...)."""
        return self.ai.in_role(role)

    def tel_leg_in(self, role: str) -> bool:
        """Whether the telephony leg's state has ``role`` in the protocol."""
        return self.tel.in_role(role)

    @property
    def finished(self) -> bool:
        """Both legs are in a final state: nothing more will happen on this call."""
        return self.tel.finished and self.ai.finished

    @property
    def playout(self) -> Playout:
        """The AI audio waiting to be played to the caller (and its statistics)."""
        return self.audio.playout

    @property
    def ledger(self) -> MarkLedger:
        """The AI's marks placed in the playout, and how they resolved."""
        return self.audio.ledger

    @property
    def tel_in(self) -> AudioFormat:
        """The caller's audio format (fixed by the start message)."""
        return self.audio.tel_in

    @property
    def tel_out(self) -> AudioFormat:
        """The format callbridge sends the platform."""
        return self.audio.tel_out

    @property
    def ai_format(self) -> AudioFormat:
        """The AI provider's audio format, both ways."""
        return self.audio.ai_format

    def release(self) -> None:
        """Detach from the shared machines (call once the call is over; idempotent).

        An ended call is then freed by reference counting at once, instead of waiting in the
        oldest generation for a full collection, which stalls every live call."""
        if not self._released:
            self._released = True
            self.tel.compiled.machine.remove_model(self.tel)
            self.ai.compiled.machine.remove_model(self.ai)

    def counters(self) -> dict[str, int]:
        """Frames each way per leg plus the session's event counters (for summaries and metrics)."""
        return {
            "telephony_in": self.tel.frames_in,
            "telephony_out": self.tel.frames_out,
            "ai_in": self.ai.frames_in,
            "ai_out": self.ai.frames_out,
            **self.stats,
        }

    def played_ms(self) -> float:
        """Milliseconds of AI audio the caller has heard so far."""
        return self.audio.playout.played_ms(self.now)

    # ------------------------------------------------------------------ for the protocol's actions

    def fire(self, leg: Leg, event: str, fields: Mapping[str, Any]) -> None:
        """Fire ``event`` on ``leg``'s Machine: the protocol does the rest."""
        if self._released:
            return
        try:
            leg.compiled.fire(leg, event, self, leg, fields)
        except CallbridgeError as exc:
            self.outbox.note("error.action", leg.name, str(exc), "error")

    def begin(self, fields: Mapping[str, Any]) -> None:
        """The caller's start: keep its fields, fill both legs' template context, build the audio path."""
        self.start_fields = MappingProxyType(dict(fields))
        route = self.route
        inbound = route.call_type != "outbound"
        customer = str(fields.get("from" if inbound else "to") or route.caller_id)
        if not fields.get("from" if inbound else "to") and not route.caller_id_given:
            # said once, so that a UUID reaching the AI as callerIdNumber is never a surprise
            self.outbox.note(
                "call.no_caller_number",
                "telephony",
                f"{route.provider} sent no caller number and the URL no ?caller_id=: the AI gets "
                "the generated caller_id instead (see docs/platforms/ for where this platform puts it)",
                "warning",
                {"caller_id": route.caller_id},
            )
        ours = str(fields.get("to" if inbound else "from") or route.virtual_number)
        caller, callee = (customer, ours) if inbound else (ours, customer)
        region = route.default_region
        audio = self.audio
        shared = {
            "bridge_call_id": self.call_id,
            "platform_call_id": str(fields.get("call_id") or fields.get("stream_id") or self.call_id),
            "caller_number": to_e164(caller, region),
            "callee_number": to_e164(callee, region),
            "account_id": str(self.ai_target.account_id or fields.get("account_id") or route.outlet_id),
            **route.parts(),
            "ai_encoding": self.ai.peer.ai_format_name,
            "ai_sample_rate": audio.ai_format.sample_rate,
        }
        for leg, fmt in ((self.tel, audio.tel_out), (self.ai, audio.ai_format)):
            leg.ctx.update(fields)
            leg.ctx.update(shared)
            leg.ctx["out_encoding"] = fmt.encoding
            leg.ctx["out_sample_rate"] = fmt.sample_rate
        audio.start(self.call_id)

    def play(self, fields: Mapping[str, Any]) -> None:
        """The AI's audio to the playout; an overrun the platform spec closes on hangs up."""
        if not self.audio.play(fields["audio"], self.now):
            control.ACTIONS["hangup_telephony"](self, self.tel, {"reason": "overrun"})

    # ------------------------------------------------------------------ dispatch

    def _receive(self, leg: Leg, message: str | bytes, now: float) -> list[Command]:
        self.now = now
        outbox = self.outbox
        out = outbox.items = []  # Outbox.reset, inlined: once per frame
        outbox.rescheduled = False
        leg.frames_in += 1
        try:
            decoded = leg.peer.decode(message, leg.env)
        except RemoteProtocolError as exc:
            compiled = leg.compiled
            policy = compiled.malformed if exc.kind is ProtocolErrorKind.MALFORMED else compiled.unknown
            control.refuse(self, leg, exc.kind.value, policy, exc.message)
            return out
        if decoded is None:
            return out
        events = decoded.events
        if events == ("media",):
            self._media(leg, decoded.fields, decoded.pattern)
            return out
        pattern = decoded.pattern
        fields = decoded.fields
        if pattern.remember:
            self._remember(leg, pattern, fields)
        if leg is self.tel and "sequence" in fields:
            self.audio.skip_sequence(int(fields["sequence"]))
        for event in events:
            self.fire(leg, event, fields)
        if pattern.replies:
            self._reply(leg, pattern.replies, fields)
        self._sync_timers()
        return out

    def _remember(self, leg: Leg, pattern: Any, fields: Mapping[str, Any]) -> None:
        """Keep the x_ fields a message carried in its leg's template context (e.g. OpenAI's
        item_id, Genesys' seq); an AI audio item that changes starts a new item position."""
        ctx = leg.ctx
        for name in pattern.remember:
            if name in fields:
                ctx[name] = fields[name]
        if leg is self.ai and "x_item_id" in fields:
            self.audio.note_item(fields["x_item_id"])

    def _reply(self, leg: Leg, replies: tuple[str, ...], fields: Mapping[str, Any]) -> None:
        """Send a pattern's replies; they go before any close of that leg the message caused
        (Genesys: ``closed`` answers ``close`` before the socket goes)."""
        out = self.outbox.items
        cut = next((i for i, a in enumerate(out) if type(a) is CloseLeg and a.leg == leg.name), None)
        mark = len(out)
        for reply in replies:
            try:
                self.outbox.send(leg, reply, fields)
            except LocalProtocolError as exc:
                # e.g. a truncate with no AI audio item yet: nothing to answer
                self.outbox.note("reply.skipped", leg.name, f"reply {reply!r} not sent: {exc.message}", "debug")
        if cut is not None and len(out) > mark:
            moved = out[mark:]
            del out[mark:]
            out[cut:cut] = moved

    def _media(self, leg: Leg, fields: Mapping[str, Any], pattern: Any) -> None:
        """The hot path: a media frame never fires a trigger where the protocol lets it through."""
        if leg.state not in leg.media_states:
            self.fire(leg, "media", fields)  # the protocol's policy for media in this state
            return
        try:
            if leg is self.tel:
                audio = self.audio
                if audio.reorder is None:
                    audio.forward(fields["audio"])
                else:
                    audio.forward_media(fields)
            else:
                if pattern is not None and pattern.remember:
                    self._remember(leg, pattern, fields)
                self.play(fields)
        except CallbridgeError as exc:
            self.outbox.note("error.media", leg.name, str(exc), "error")

    def _internal(self, leg: Leg, event: str, now: float, fields: Mapping[str, Any]) -> list[Command]:
        self.now = now
        out = self.outbox.reset()
        self.fire(leg, event, fields)
        self._sync_timers()
        return out

    def _sync_timers(self) -> None:
        timers = self._timers
        for timer in self.specs.protocol.timers:
            leg = self.tel if timer.leg == TELEPHONY else self.ai
            if leg.state in timer.states:
                if timer.name not in timers:
                    timers[timer.name] = self.now + timer.after
                    self.outbox.reschedule()
            else:
                timers.pop(timer.name, None)
