"""``CallSession``: one bridged call, sans-I/O.

Feed it what arrives and when; it returns what to do::

    session = CallSession(specs, route)
    actions = session.receive_telephony(text_or_bytes, now)   # a platform frame
    actions = session.receive_ai(text_or_bytes, now)          # an AI provider frame
    actions = session.ai_opened(now) / ai_failed(now, why) / ai_closed(now) / telephony_closed(now)
    deadline = session.next_deadline()                        # when to call on_timer, or None
    actions = session.on_timer(now)

Each call returns a list of :mod:`engine.core.commands` (send, open the AI leg, close a leg,
notices for logs and metrics). There are no sockets, clocks or awaits in here.

One exception to "returned at the end": an adapter may set :attr:`CallSession.urgent` to a
function taking a list of actions. A barge-in then hands it the platform's ``clear`` (with
anything queued before it, so the order holds) the moment it is made, before the playout flush,
the filter reset and the marks it settles: every microsecond before the platform gets it is
cut audio the caller may still hear. The actions handed over are not returned again, so the
handed-over and the returned lists together are exactly what the call returns without the hook.

Control events run through the call's two state machines (``transitions`` models attached to
the protocol's shared per-leg machines): the protocol's table says, for the leg's current state,
whether the event is a transition (with guard and actions) or a violation (with its policy).
Media frames never fire a trigger: the table's media states are a precomputed set, so a frame
costs a set lookup, its conversion and its rendering.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import inf
from types import MappingProxyType
from typing import Any

from engine.core.commands import AI, TELEPHONY, Command, CloseLeg, Notice, OpenLeg, Send
from engine.core.numbers import to_e164
from engine.core.pipeline import Converter, make_converter
from engine.core.playout import CLEARED, PLAYED, Mark, MarkLedger, Playout
from engine.core.reorder import Reorder
from engine.dsp import formats
from engine.dsp.formats import AudioFormat
from engine.errors import CallbridgeError, LocalProtocolError, RemoteProtocolError, UsageError
from engine.language import vocabulary as vocab
from engine.language.loader import SpecSet
from engine.language.peer import CompiledPeer
from engine.language.protocol import CompiledLeg, Policy, Transition

#: seed 000's hangup reasons; anything else a platform says becomes NORMAL_CLEARING
HANGUP_REASONS = frozenset({"NORMAL_CLEARING", "USER_BUSY", "NO_ANSWER", "CALL_REJECTED", "ORIGINATOR_CANCEL"})
DTMF_DIGITS = frozenset("0123456789*#ABCD")
EARLY_AUDIO_MS = 2000  # caller audio kept while the AI leg opens
TAIL_MARGIN_S = 0.04  # send a held partial chunk this long before the platform runs dry
TAIL_WAIT_S = 0.06  # ... or this long after the AI's last audio when the platform is idle


@dataclass(frozen=True)
class CallRoute:
    """What the route and the upgrade request say about a call (seed 002's URL)."""

    provider: str
    call_type: str = "inbound"
    agent_id: int = 0
    outlet_id: int = 0
    virtual_number: str = ""
    caller_id: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    default_region: str = "US"

    def parts(self) -> dict[str, Any]:
        """The route's parts by name: the ``$path`` extraction root and template variables."""
        return {
            "provider": self.provider,
            "call_type": self.call_type,
            "agent_id": self.agent_id,
            "outlet_id": self.outlet_id,
            "virtual_number": self.virtual_number,
            "caller_id": self.caller_id,
        }


@dataclass(frozen=True)
class AITarget:
    """The AI provider routed for a call: its spec plus the config's overrides."""

    peer: CompiledPeer
    url: str | None = None
    headers: Mapping[str, str] | None = None
    account_id: str | None = None


class Payload:
    """An event as the state machine callbacks see it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.event = event
        self.fields = fields


class Leg:
    """One leg of one call, attached as a model to its protocol leg's shared Machine.

    ``act_<name>`` and ``guard_<name>`` methods (generated below from the vocabulary) are the
    callbacks the Machine was compiled with; they hand over to the session.
    """

    state: str

    def __init__(self, session: CallSession, compiled: CompiledLeg, peer: CompiledPeer) -> None:
        self.session: CallSession | None = session  # None once released (no cycle left behind)
        self.name = compiled.name
        self.compiled = compiled
        self.peer = peer
        self.close_sent = False
        self.frames_in = 0
        self.frames_out = 0

    def __repr__(self) -> str:
        return f"<{self.name} leg in {getattr(self, 'state', '?')}>"


def _bind(kind: str, name: str) -> Any:
    if kind == "act":

        def act(self: Leg, payload: Payload | None = None) -> None:
            if self.session is not None:
                self.session._run_action(name, self, payload)

        act.__name__ = f"act_{name}"
        return act

    def guard(self: Leg, payload: Payload | None = None) -> bool:
        return self.session is not None and self.session._check_guard(name, self, payload)

    guard.__name__ = f"guard_{name}"
    return guard


for _name in vocab.ACTIONS:
    setattr(Leg, f"act_{_name}", _bind("act", _name))
for _name in vocab.GUARDS:
    setattr(Leg, f"guard_{_name}", _bind("guard", _name))


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
        tel_peer = specs.providers[route.provider]
        ai = ai or AITarget(specs.ai_providers["default"])
        self.ai_target = ai
        self.tel = Leg(self, protocol.legs[TELEPHONY], tel_peer)
        self.ai = Leg(self, protocol.legs[AI], ai.peer)
        protocol.legs[TELEPHONY].machine.add_model(self.tel)
        protocol.legs[AI].machine.add_model(self.ai)
        self._released = False
        self._out: list[Command] = []
        #: the adapter's "act on these now" (see the module docstring); None: all are returned
        self.urgent: Callable[[list[Command]], None] | None = None
        # Per-call environment for `$query`, `$path`, `$header` extraction roots.
        self._env: dict[str, Any] = {
            "query": dict(route.query),
            "path": route.parts(),
            "header": {k.lower(): v for k, v in route.headers.items()},
        }
        self._ai_env: dict[str, Any] = {"query": {}, "path": {}, "header": {}}
        # Template variables per leg; filled at start.
        self.tel_ctx: dict[str, Any] = {"seq": 0, "media_seq": 0, "media_timestamp": 0, "played_ms": 0}
        self.ai_ctx: dict[str, Any] = {"seq": 0, "media_seq": 0, "media_timestamp": 0, "played_ms": 0}
        self.start_fields: Mapping[str, Any] = MappingProxyType({})
        # Audio, set up when the start message fixes the platform's format.
        self.tel_in: AudioFormat = tel_peer.audio.inbound
        self.tel_out: AudioFormat = tel_peer.audio.outbound or tel_peer.audio.inbound
        self.ai_format: AudioFormat = ai.peer.audio.inbound
        self._uplink: Converter | None = None
        self._downlink: Converter | None = None
        self._framer: Any = None
        self._last_ai_audio = -inf
        self._early: deque[bytes] = deque()
        self._early_bytes = 0
        marks = tel_peer.marks
        self._marks_native = marks.mode == "native"
        self._clear_native = tel_peer.clear.mode == "native" and "clear" in tel_peer.templates
        self.ledger = MarkLedger(marks.timeout_ms / 1000.0, marks.max_pending)
        self.playout = Playout(
            lead_ms=float(playout_lead_ms if playout_lead_ms is not None else tel_peer.audio.playout_lead_ms),
            max_buffer_ms=float(tel_peer.audio.max_buffer_ms),
            on_overrun=tel_peer.audio.on_overrun,
        )
        self._timers: dict[str, float] = {}
        #: set whenever something may have brought :meth:`next_deadline` forward (a timer armed,
        #: audio or a mark queued); an adapter may clear it and skip recomputing otherwise
        self.deadline_changed = True
        # Telephony media reordering (audio.reorder), only for specs that declare it.
        self._reorder: Reorder | None = None
        if tel_peer.audio.reorder_by is not None:
            self._reorder = Reorder(
                tel_peer.audio.reorder_by, tel_peer.audio.reorder_window, lambda b: len(b) / self.tel_in.bytes_per_ms
            )
        self._last_caller_frame = 0  # bytes in the last caller frame (the size of a concealed one)
        # The AI's audio items (x_item_id): where the current one starts in the playout stream.
        self._item_id: Any = None
        self._item_start_ms = 0.0
        self._tel_media_states = protocol.legs[TELEPHONY].media_states
        self._ai_media_states = protocol.legs[AI].media_states
        self.stats: dict[str, int] = {"violations": 0, "clears": 0, "marks_played": 0, "marks_cleared": 0}
        self.hangup_reason = "NORMAL_CLEARING"
        self._sync_timers()

    # ------------------------------------------------------------------ public interface

    def receive_telephony(self, message: str | bytes, now: float) -> list[Command]:
        """A frame from the platform (``str`` for text frames, ``bytes`` for binary)."""
        return self._receive(self.tel, message, now, self._env)

    def receive_ai(self, message: str | bytes, now: float) -> list[Command]:
        """A frame from the AI provider."""
        return self._receive(self.ai, message, now, self._ai_env)

    def ai_opened(self, now: float) -> list[Command]:
        return self._internal(self.ai, "opened", now, {})

    def ai_failed(self, now: float, reason: str = "") -> list[Command]:
        out = self._internal(self.ai, "failed", now, {"reason": reason})
        message = f"AI provider unreachable: {reason}" if reason else "AI provider unreachable"
        out.insert(0, Notice("ai.connect_failed", AI, message, "warning", {}))
        return out

    def ai_closed(self, now: float, code: int | None = None) -> list[Command]:
        return self._internal(self.ai, "closed", now, {"close_code": code})

    def telephony_closed(self, now: float, code: int | None = None) -> list[Command]:
        return self._internal(self.tel, "closed", now, {"close_code": code})

    def hang_up(self, now: float, reason: str = "NORMAL_CLEARING") -> list[Command]:
        """End the call from callbridge's side (drain, idle timeout, an operator): the AI gets
        its hangup with ``reason``, the platform its own hangup message (where its spec has one)
        and a close with the spec's code."""
        self.now = now
        out = self._out = []
        self._run_action("hangup_ai", self.ai, Payload("hangup", {"reason": reason}))
        self._run_action("hangup_telephony", self.tel, Payload("hangup", {"reason": reason}))
        self._sync_timers()
        return out

    def retarget_ai(self, target: AITarget) -> None:
        """Point a call whose AI leg has not opened yet at another AI provider (a fallback).

        The next ``OpenLeg`` is the adapter's to make; audio formats, templates and the start
        message follow the new provider's spec. Refused once the AI leg is up or gone.
        """
        ai = self.ai
        if ai.state in self._ai_media_states or ai.state in ai.compiled.final:
            raise UsageError(f"cannot retarget the AI leg in state {ai.state}: only before it opens")
        self.ai_target = target
        ai.peer = target.peer
        self.ai_format = target.peer.audio.inbound
        if self._uplink is not None:  # the call has started: rebuild its audio path and context
            self._uplink = make_converter(self.tel_in, self.ai_format, call_id=self.call_id, leg=AI)
            self._downlink = make_converter(self.ai_format, self.tel_out, call_id=self.call_id, leg=TELEPHONY)
            self._ai_media = target.peer.templates["media"]
            self._ai_ms_per_byte = 1.0 / self.ai_format.bytes_per_ms if self.ai_format.bytes_per_ms else 0.0
            for ctx in (self.tel_ctx, self.ai_ctx):
                ctx["ai_encoding"] = target.peer.ai_format_name
                ctx["ai_sample_rate"] = self.ai_format.sample_rate
            self.ai_ctx["out_encoding"] = self.ai_format.encoding
            self.ai_ctx["out_sample_rate"] = self.ai_format.sample_rate

    def receive_event(self, leg: str, event: str, fields: Mapping[str, Any], now: float) -> list[Command]:
        """Feed a canonical event directly, as if a peer message had decoded to it (conformance
        kits and table tests use this; adapters use ``receive_telephony``/``receive_ai``)."""
        target = self.tel if leg == TELEPHONY else self.ai
        if event == "media":
            self.now = now
            out = self._out = []
            self._media(target, fields, None)
            return out
        return self._internal(target, event, now, fields)

    def next_deadline(self) -> float | None:
        """The next time :meth:`on_timer` has work, or ``None``."""
        best = min(self._timers.values(), default=inf)
        if self._downlink is not None:
            best = min(
                best,
                self.playout.next_deadline(self.now),
                self.ledger.next_deadline(not self._marks_native),
                self._framer_deadline(),
            )
        return None if best == inf else best

    def _framer_deadline(self) -> float:
        """When a partial platform chunk held by the framer must go out, padded with silence.

        Platforms with a minimum chunk (Exotel 3.2 kB, Genesys 1600 B) would otherwise keep the
        end of an AI utterance until the AI speaks again. Holding it is right only while more
        audio may still complete the chunk without the caller noticing: so it goes once the
        playout has nothing else queued and the platform is about to run dry, or, when the
        platform is idle, shortly after the AI's last audio.
        """
        framer = self._framer
        if framer is None or not framer.pending_bytes or self.playout.queued_ms > 0:
            return inf
        return max(self.playout.drains_at - TAIL_MARGIN_S, self._last_ai_audio + TAIL_WAIT_S)

    def on_timer(self, now: float) -> list[Command]:
        self.now = now
        out = self._out = []
        for name, deadline in list(self._timers.items()):
            if deadline <= now and name in self._timers:
                del self._timers[name]
                timer = next(t for t in self.specs.protocol.timers if t.name == name)
                leg = self.tel if timer.leg == TELEPHONY else self.ai
                self._note("timer." + name, leg.name, timer.reason, "warning")
                self._dispatch(leg, "timeout", {"reason": timer.reason, "close_code": timer.close_code})
        if self._downlink is not None:
            try:
                if self._framer_deadline() <= now:
                    for frame in self._framer.flush(pad=True):
                        self.playout.push(frame, self._duration_ms(frame, self.tel_out))
                self._pump()
            except CallbridgeError as exc:  # e.g. a template needing a value this call lacks
                self.playout.clear(now, platform_flushes=False)
                self._note("error.playout", TELEPHONY, str(exc), "error")
        self._sync_timers()
        return out

    def ai_leg_in(self, role: str) -> bool:
        """Whether the AI leg's state has ``role`` in the protocol (``"opening"``, ``"live"``, ...)."""
        return self.ai.compiled.in_role(self.ai.state, role)

    def tel_leg_in(self, role: str) -> bool:
        """Whether the telephony leg's state has ``role`` in the protocol."""
        return self.tel.compiled.in_role(self.tel.state, role)

    @property
    def finished(self) -> bool:
        """Both legs are in a final state: nothing more will happen on this call."""
        return self.tel.state in self.tel.compiled.final and self.ai.state in self.ai.compiled.final

    def release(self) -> None:
        """Detach from the shared machines (call once the call is over; idempotent).

        It also cuts the references that form cycles (the legs' back-reference, the adapter's
        bound method): an ended call is then freed by reference counting at once, instead of
        waiting in the oldest generation for a full collection, which stalls every live call."""
        self.urgent = None
        if not self._released:
            self._released = True
            self.specs.protocol.legs[TELEPHONY].machine.remove_model(self.tel)
            self.specs.protocol.legs[AI].machine.remove_model(self.ai)
            self.tel.session = self.ai.session = None

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
        return self.playout.played_ms(self.now)

    # ------------------------------------------------------------------ dispatch

    def _receive(self, leg: Leg, message: str | bytes, now: float, env: Mapping[str, Any]) -> list[Command]:
        self.now = now
        out = self._out = []
        leg.frames_in += 1
        try:
            decoded = leg.peer.decode(message, env)
        except RemoteProtocolError as exc:
            compiled = leg.compiled
            policy = compiled.malformed if exc.reason == "malformed" else compiled.unknown
            self._refuse(leg, exc.reason, policy, exc.message)
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
        if self._reorder is not None and leg is self.tel and self._reorder.by == "sequence" and "sequence" in fields:
            for item in self._reorder.skip(int(fields["sequence"])):
                self._reordered_item(item)
        for event in events:
            self._dispatch(leg, event, fields)
        if pattern.replies:
            self._reply(leg, pattern.replies, fields)
        self._sync_timers()
        return out

    def _remember(self, leg: Leg, pattern: Any, fields: Mapping[str, Any]) -> None:
        """Keep the x_ fields a message carried in its leg's template context (e.g. OpenAI's
        item_id, Genesys' seq); an AI audio item that changes starts a new item position."""
        ctx = self.tel_ctx if leg is self.tel else self.ai_ctx
        for name in pattern.remember:
            if name in fields:
                ctx[name] = fields[name]
        if leg is self.ai and "x_item_id" in fields and fields["x_item_id"] != self._item_id:
            self._item_id = fields["x_item_id"]
            self._item_start_ms = self._stream_position_ms()

    def _stream_position_ms(self) -> float:
        """Where audio queued now will sit in the stream played to the caller."""
        pending = self._framer.pending_bytes if self._framer is not None else 0
        per_ms = self.tel_out.bytes_per_ms
        return self.playout.position_ms + (pending / per_ms if per_ms else 0.0)

    def _reply(self, leg: Leg, replies: tuple[str, ...], fields: Mapping[str, Any]) -> None:
        """Send a pattern's replies; they go before any close of that leg the message caused
        (Genesys: ``closed`` answers ``close`` before the socket goes)."""
        out = self._out
        cut = next((i for i, a in enumerate(out) if type(a) is CloseLeg and a.leg == leg.name), None)
        mark = len(out)
        for reply in replies:
            try:
                self._send(leg, reply, fields)
            except LocalProtocolError as exc:
                # e.g. a truncate with no AI audio item yet: nothing to answer
                self._note("reply.skipped", leg.name, f"reply {reply!r} not sent: {exc.message}", "debug")
        if cut is not None and len(out) > mark:
            moved = out[mark:]
            del out[mark:]
            out[cut:cut] = moved

    def _media(self, leg: Leg, fields: Mapping[str, Any], pattern: Any) -> None:
        """The hot path: a media frame never fires a trigger, it reads the media-state set."""
        if leg.state in (self._tel_media_states if leg is self.tel else self._ai_media_states):
            try:
                if leg is self.tel:
                    if self._reorder is None:
                        self._forward_audio(fields["audio"])
                    else:
                        self._reordered_audio(fields)
                else:
                    if pattern is not None and pattern.remember:
                        self._remember(leg, pattern, fields)
                    self._play_audio(fields["audio"])
            except CallbridgeError as exc:
                self._note("error.media", leg.name, str(exc), "error")
        else:
            entry = leg.compiled.table[(leg.state, "media")]
            assert isinstance(entry, Policy)
            self._refuse(leg, "out_of_order", entry, f"media in state {leg.state}")

    def _internal(self, leg: Leg, event: str, now: float, fields: Mapping[str, Any]) -> list[Command]:
        self.now = now
        out = self._out = []
        self._dispatch(leg, event, fields)
        self._sync_timers()
        return out

    def _dispatch(self, leg: Leg, event: str, fields: Mapping[str, Any]) -> None:
        entry = leg.compiled.table[(leg.state, event)]
        if type(entry) is Policy:
            self._refuse(leg, "out_of_order", entry, f"{event} in state {leg.state}")
            return
        assert isinstance(entry, Transition)
        if event == "media":
            self._media(leg, fields, None)
            return
        try:
            moved = leg.compiled.machine.fire(leg, event, Payload(event, fields))
        except CallbridgeError as exc:
            self._note("error.action", leg.name, str(exc), "error")
            return
        if not moved:
            self._refuse(leg, "guard", entry.otherwise, f"{event} in state {leg.state}: {entry.guard} said no")

    def _refuse(self, leg: Leg, kind: str, policy: Policy, detail: str) -> None:
        """Apply a violation policy."""
        if policy.kind == "ignore":
            return
        self.stats["violations"] += 1
        message = f"{detail} ({kind}; policy {policy})"
        self._note(f"violation.{kind}", leg.name, message, "warning", {"policy": policy.kind, "state": leg.state})
        if policy.kind == "reject" and "error" in leg.peer.templates:
            self._send(leg, "error", {"error": detail, "reason": kind})
        elif policy.kind == "close":
            reason = policy.reason or detail
            if leg is self.tel:
                self.hangup_reason = "NORMAL_CLEARING"
            self._close(leg, policy.close_code, reason)
            if (leg.state, "hangup_sent") in leg.compiled.table and isinstance(
                leg.compiled.table[(leg.state, "hangup_sent")], Transition
            ):
                self._dispatch(leg, "hangup_sent", {"close_code": policy.close_code, "reason": reason})

    def _run_action(self, name: str, leg: Leg, payload: Payload | None) -> None:
        fields = payload.fields if payload is not None else {}
        try:
            getattr(self, "_a_" + name)(leg, fields)
        except CallbridgeError as exc:
            self._note(f"error.{name}", leg.name, str(exc), "error")

    def _check_guard(self, name: str, leg: Leg, payload: Payload | None) -> bool:
        fields = payload.fields if payload is not None else {}
        return bool(getattr(self, "_g_" + name)(leg, fields))

    def _sync_timers(self) -> None:
        for timer in self.specs.protocol.timers:
            leg = self.tel if timer.leg == TELEPHONY else self.ai
            if leg.state in timer.states:
                if timer.name not in self._timers:
                    self._timers[timer.name] = self.now + timer.after
                    self.deadline_changed = True
            else:
                self._timers.pop(timer.name, None)

    # ------------------------------------------------------------------ output helpers

    def _note(
        self, code: str, leg: str, message: str, level: str = "info", fields: Mapping[str, Any] | None = None
    ) -> None:
        self._out.append(Notice(code, leg, message, level, fields or {}))

    def _send(self, leg: Leg, template: str, values: Mapping[str, Any]) -> bool:
        tmpl = leg.peer.templates.get(template)
        if tmpl is None:
            return False
        ctx = self.tel_ctx if leg is self.tel else self.ai_ctx
        if not tmpl.binary:
            ctx["seq"] += 1  # counts messages, not binary audio frames (Genesys numbers its JSON)
        self._out.append(Send(leg.name, tmpl.render(values, ctx), tmpl.binary))
        leg.frames_out += 1
        return True

    def _hand_over_now(self) -> None:
        """Give the adapter what is queued so far, at once (see :attr:`urgent`)."""
        urgent = self.urgent
        out = self._out
        if urgent is not None and out:
            ready = out[:]
            del out[:]  # the same list: the caller returns only what comes after
            urgent(ready)

    def _close(self, leg: Leg, code: int, reason: str) -> None:
        if not leg.close_sent:
            leg.close_sent = True
            self._out.append(CloseLeg(leg.name, code, reason[:120]))

    # ------------------------------------------------------------------ media paths

    def _forward_audio(self, audio: bytes) -> None:
        ai = self.ai
        ai_state = ai.state
        if ai_state in self._ai_media_states and self._uplink is not None:
            ctx = self.ai_ctx
            tmpl = self._ai_media
            ms_per_byte = self._ai_ms_per_byte
            binary = tmpl.binary
            for chunk in self._uplink.convert(audio):
                if not binary:
                    ctx["seq"] += 1
                ctx["media_seq"] += 1
                self._out.append(Send(AI, tmpl.render({"audio": chunk}, ctx), binary))
                ctx["media_timestamp"] += len(chunk) * ms_per_byte if ms_per_byte else ai.peer.opus_frame_ms
            ai.frames_out += 1
        elif ai_state not in self.ai.compiled.final:
            # The AI leg is still opening: keep the caller's first words for it (bounded).
            self._early.append(audio)
            self._early_bytes += len(audio)
            limit = self.tel_in.frame_bytes(EARLY_AUDIO_MS) if self.tel_in.encoding != formats.OPUS else 1 << 20
            while self._early_bytes > limit and self._early:
                self._early_bytes -= len(self._early.popleft())

    def _reordered_audio(self, fields: Mapping[str, Any]) -> None:
        reorder = self._reorder
        assert reorder is not None
        key = fields.get(reorder.by)
        for item in reorder.push(int(key) if key is not None else None, fields["audio"]):
            self._reordered_item(item)

    def _reordered_item(self, item: bytes | int) -> None:
        if type(item) is bytes:
            self._last_caller_frame = len(item)
            self._forward_audio(item)
            return
        assert isinstance(item, int)
        reorder = self._reorder
        assert reorder is not None
        self._note(
            "media.gap",
            TELEPHONY,
            f"caller audio {reorder.by} gap of {item} never arrived within the reorder window"
            + ("; concealed with silence" if self.tel.peer.audio.reorder_conceal else ""),
            "warning",
        )
        fmt = self.tel_in
        if not self.tel.peer.audio.reorder_conceal or fmt.encoding == formats.OPUS:
            return
        silence = bytes([{formats.MULAW: 0xFF, formats.ALAW: 0xD5, formats.PCM_8_U: 0x80}.get(fmt.encoding, 0)])
        if reorder.by == "timestamp":
            frames, size = 1, fmt.frame_bytes(min(item, 20 * reorder.window))
        else:
            frames, size = min(item, reorder.window), self._last_caller_frame or fmt.frame_bytes(20)
        for _ in range(frames):
            self._forward_audio(silence * size)  # through the uplink converter: its state stays continuous

    def _flush_reorder(self) -> None:
        if self._reorder is not None:
            for audio in self._reorder.flush():
                self._forward_audio(audio)

    def _play_audio(self, audio: bytes) -> None:
        if self._downlink is None:
            return
        self._last_ai_audio = self.now
        if self._framer is None and self.tel_out.encoding != formats.OPUS:
            self._framer = self._make_framer()
        for chunk in self._downlink.convert(audio):
            for frame in self._framer.push(chunk) if self._framer is not None else (chunk,):
                if not self.playout.push(frame, self._duration_ms(frame, self.tel_out)):
                    self._note(
                        "playout.overrun",
                        TELEPHONY,
                        f"AI audio beyond the {self.playout.max_buffer_ms:.0f} ms playout cap "
                        f"({self.playout.on_overrun})",
                        "warning",
                    )
                    if self.playout.on_overrun == "close":
                        self._run_action("hangup_telephony", self.tel, Payload("overrun", {}))
                        return
        self._pump()
        if self.playout.queued_ms or len(self.ledger) or (self._framer is not None and self._framer.pending_bytes):
            # Something waits for a later time: the adapter must look at next_deadline() again.
            self.deadline_changed = True

    def _duration_ms(self, data: bytes, fmt: AudioFormat) -> float:
        if fmt.encoding == formats.OPUS:
            return self.ai.peer.opus_frame_ms if fmt is self.ai_format else self.tel.peer.audio.chunk_ms
        return len(data) / fmt.bytes_per_ms

    def _pump(self) -> None:
        """Release what the playout clock allows; settle marks whose time came."""
        now = self.now
        ctx = self.tel_ctx
        media = self._tel_media
        out = self._out
        for item in self.playout.release(now):
            if isinstance(item, Mark):
                if self._marks_native:
                    self._send(self.tel, "mark", {"mark": item.wire})
            else:
                # The media fast path of _send_media, inlined: one per 20 ms frame per call.
                if not media.binary:
                    ctx["seq"] += 1
                ctx["media_seq"] += 1
                out.append(Send(TELEPHONY, media.render({"audio": item.data}, ctx), media.binary))
                ctx["media_timestamp"] += item.duration_ms
                self.tel.frames_out += 1
        if len(self.ledger):
            for mark in self.ledger.due(now, emulated=not self._marks_native):
                self._answer_mark(mark)
        self.ai_ctx["played_ms"] = ctx["played_ms"] = int(self.playout.played_ms(now))

    def _answer_mark(self, mark: Mark) -> None:
        outcome = mark.outcome or PLAYED
        self.stats["marks_played" if outcome == PLAYED else "marks_cleared"] += outcome in (PLAYED, CLEARED)
        self._note(
            f"mark.{outcome}",
            TELEPHONY,
            f"mark {mark.name!r} {outcome}",
            "debug",
            {"mark": mark.name, "wire": mark.wire},
        )
        templates = self.ai.peer.templates
        name = f"mark_{outcome}" if f"mark_{outcome}" in templates else "mark"
        if self.ai.state in self._ai_media_states:
            self._send(self.ai, name, {"mark": mark.name, "mark_status": outcome})

    # ------------------------------------------------------------------ guards

    def _g_media_format_supported(self, leg: Leg, fields: Mapping[str, Any]) -> bool:
        audio = leg.peer.audio
        base = audio.inbound
        encoding, rate, channels = base.encoding, base.sample_rate, base.channels
        if "encoding" in fields:
            parsed = formats.parse_encoding(str(fields["encoding"]))
            if parsed is None:
                self._note("start.format", leg.name, f"unknown encoding {fields['encoding']!r} in start", "warning")
                return False
            encoding, rate = parsed[0], parsed[1] or rate
        rate = int(fields.get("sample_rate") or rate)
        channels = int(fields.get("channels") or channels)
        if (
            encoding not in audio.accept_encodings
            or rate not in audio.accept_rates
            or channels not in audio.accept_channels
        ):
            self._note(
                "start.format",
                leg.name,
                f"start announces {encoding}/{rate}/{channels}ch, which {leg.peer.name} does not accept",
                "warning",
            )
            return False
        if encoding in (formats.MULAW, formats.ALAW) and rate != 8000:
            return False
        self.tel_in = AudioFormat(encoding, rate, channels)
        out = audio.outbound
        self.tel_out = out if out is not None else self.tel_in
        return True

    def _g_digit_valid(self, leg: Leg, fields: Mapping[str, Any]) -> bool:
        return str(fields.get("digit", "")).upper() in DTMF_DIGITS

    def _g_mark_pending(self, leg: Leg, fields: Mapping[str, Any]) -> bool:
        return self.ledger.is_pending(str(fields.get("mark", "")))

    # ------------------------------------------------------------------ actions

    def _a_open_ai_leg(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        self.start_fields = MappingProxyType(dict(fields))
        self._build_contexts(fields)
        self._uplink = make_converter(self.tel_in, self.ai_format, call_id=self.call_id, leg=AI)
        self._ai_media = self.ai.peer.templates["media"]
        self._tel_media = self.tel.peer.templates["media"]
        self._ai_ms_per_byte = 1.0 / self.ai_format.bytes_per_ms if self.ai_format.bytes_per_ms else 0.0
        self._downlink = make_converter(self.ai_format, self.tel_out, call_id=self.call_id, leg=TELEPHONY)
        peer = self.ai.peer
        target = self.ai_target
        assert peer.websocket is not None
        self._out.append(
            OpenLeg(
                AI,
                target.url or peer.websocket.url,
                MappingProxyType(dict(target.headers if target.headers is not None else peer.websocket.headers)),
                peer.websocket.subprotocols,
            )
        )
        self._dispatch(self.ai, "dial", {})

    def _make_framer(self) -> Any:
        framing = self.tel.peer.audio.framing
        fmt = self.tel_out
        if fmt.encoding == formats.OPUS:
            return None
        from engine.dsp.framer import Framer

        frame_ms = framing.frame_ms
        if frame_ms is None and not (framing.multiple_of_bytes or framing.min_bytes):
            frame_ms = self.tel.peer.audio.chunk_ms
        return Framer(
            fmt,
            frame_ms=frame_ms,
            multiple_of_bytes=framing.multiple_of_bytes,
            min_bytes=framing.min_bytes,
            max_bytes=framing.max_bytes,
        )

    def _build_contexts(self, fields: Mapping[str, Any]) -> None:
        route = self.route
        inbound = route.call_type != "outbound"
        customer = str(fields.get("from" if inbound else "to") or route.caller_id)
        ours = str(fields.get("to" if inbound else "from") or route.virtual_number)
        caller, callee = (customer, ours) if inbound else (ours, customer)
        region = route.default_region
        shared = {
            "bridge_call_id": self.call_id,
            "platform_call_id": str(fields.get("call_id") or fields.get("stream_id") or self.call_id),
            "caller_number": to_e164(caller, region),
            "callee_number": to_e164(callee, region),
            "account_id": str(self.ai_target.account_id or fields.get("account_id") or route.outlet_id),
            **route.parts(),
            "ai_encoding": self.ai.peer.ai_format_name,
            "ai_sample_rate": self.ai_format.sample_rate,
        }
        for ctx, fmt in ((self.tel_ctx, self.tel_out), (self.ai_ctx, self.ai_format)):
            ctx.update(fields)
            ctx.update(shared)
            ctx["out_encoding"] = fmt.encoding
            ctx["out_sample_rate"] = fmt.sample_rate

    def _a_send_ai_start(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        self._send(self.ai, "start", {})
        self._note(
            "call.started",
            AI,
            f"bridged {self.route.provider} call to {self.ai.peer.name}",
            "info",
            {"caller": self.ai_ctx.get("caller_number"), "callee": self.ai_ctx.get("callee_number")},
        )

    def _a_flush_early_audio(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        early, self._early = self._early, deque()
        self._early_bytes = 0
        for audio in early:
            self._forward_audio(audio)

    def _a_forward_audio(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        self._forward_audio(fields["audio"])

    def _a_play_audio(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        self._play_audio(fields["audio"])

    def _a_forward_dtmf(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        values = {"digit": str(fields["digit"]).upper(), "duration": fields.get("duration")}
        if self.ai.state in self._ai_media_states and not self._send(self.ai, "dtmf", values):
            self._note("dtmf.unsupported", AI, f"{self.ai.peer.name} has no dtmf message; digit dropped", "warning")

    def _a_send_dtmf(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        values = {"digit": str(fields["digit"]).upper(), "duration": fields.get("duration")}
        if self.tel.state in self._tel_media_states and not self._send(self.tel, "dtmf", values):
            self._note("dtmf.unsupported", TELEPHONY, f"{self.tel.peer.name} cannot play digits; dropped", "warning")

    def _a_resolve_mark(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        status = str(fields.get("mark_status", "")).lower()
        outcome = CLEARED if status in ("cleared", "clear", "canceled", "cancelled", "flushed") else PLAYED
        mark = self.ledger.settle(str(fields["mark"]), outcome)
        if mark is not None:
            self._answer_mark(mark)

    def _a_confirm_clear(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        self._note("clear.confirmed", leg.name, "platform confirmed the clear", "debug")

    def _a_barge_in(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        now = self.now
        # The platform's clear goes first: every microsecond before it is audio the caller may
        # still hear; the bookkeeping below changes nothing in it.
        if self._clear_native and self.tel.state in self._tel_media_states:
            self._send(self.tel, "clear", {})
            self._hand_over_now()
        if self._item_id is not None:
            # The cut point within the current AI audio item: what the caller heard of it.
            heard = self.playout.played_ms(now) - self._item_start_ms
            self.ai_ctx["item_played_ms"] = max(0, round(heard))
            if (
                self.playout.queued_ms <= 0
                and self.playout.ahead_ms(now) <= 0
                and not (self._framer is not None and self._framer.pending_bytes)
            ):
                # That item was heard to its end: nothing to truncate.
                self.ai_ctx.pop("x_item_id", None)
            self._item_id = None
        self.playout.clear(now, platform_flushes=self._clear_native)
        if self._downlink is not None:
            self._downlink.reset()
        if self._framer is not None:
            self._framer.clear()
        self.stats["clears"] += 1
        for mark in self.ledger.settle_all(CLEARED):
            self._answer_mark(mark)
        played = int(self.playout.played_ms(now))
        self.ai_ctx["played_ms"] = self.tel_ctx["played_ms"] = played
        self._note("clear", AI, f"barge-in: playout flushed at {played} ms heard", "info", {"played_ms": played})

    def _a_queue_mark(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        if len(self.ledger) >= self.ledger.max_pending:
            self._note("mark.refused", AI, f"more than {self.ledger.max_pending} marks pending", "warning")
            return
        mark = self.ledger.create(str(fields["mark"]), self.playout.position_ms)
        self.playout.add_mark(mark)
        self.deadline_changed = True
        self._pump()

    def _a_hangup_ai(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        ai = self.ai
        if ai.state in ai.compiled.final:
            return
        self._flush_reorder()
        reason = str(fields.get("reason") or "").upper().replace(" ", "_")
        self.hangup_reason = reason if reason in HANGUP_REASONS else "NORMAL_CLEARING"
        if ai.state in self._ai_media_states:
            self._send(ai, ai.peer.hangup.send or "hangup", {"reason": self.hangup_reason})
        self._close(ai, ai.peer.hangup.close_code, ai.peer.hangup.close_reason)
        if isinstance(ai.compiled.table[(ai.state, "hangup_sent")], Transition):
            self._dispatch(ai, "hangup_sent", {"reason": self.hangup_reason})

    def _a_hangup_telephony(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        tel = self.tel
        if tel.state in tel.compiled.final or tel.close_sent:
            return
        hangup = tel.peer.hangup
        reason = fields.get("reason") or "NORMAL_CLEARING"
        if hangup.send is not None:
            self._send(tel, hangup.send, {"reason": reason})
        # The platform gets its own close code, whatever ended the other leg (an AI's 1011 is
        # the AI's business, not the caller's).
        self._close(tel, hangup.close_code, hangup.close_reason)
        if isinstance(tel.compiled.table[(tel.state, "hangup_sent")], Transition):
            self._dispatch(tel, "hangup_sent", {"reason": reason})

    def _a_close_telephony(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        hangup = self.tel.peer.hangup
        # A timer or policy that closes brings its own code and reason; otherwise the spec's.
        if fields.get("close_code"):
            self._close(self.tel, int(fields["close_code"]), str(fields.get("reason") or hangup.close_reason))
        else:
            self._close(self.tel, hangup.close_code, hangup.close_reason)

    def _a_close_ai(self, leg: Leg, fields: Mapping[str, Any]) -> None:
        code = fields.get("close_code") or self.ai.peer.hangup.close_code
        self._close(self.ai, int(code), str(fields.get("reason") or self.ai.peer.hangup.close_reason))
