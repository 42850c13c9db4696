"""The two sides of a call, and the outbox both write their commands to.

A call has a telephony leg (the platform's WebSocket) and an AI leg (callbridge's WebSocket to
the AI provider). One :class:`Leg` class serves both, as websockets' ``Side`` does: the
protocol leg it follows, the peer spec that speaks for it, the template context its outgoing
messages render with, the extraction roots its incoming messages read, and its counters. A leg
is also the model its protocol leg's shared ``transitions`` Machine keeps the state on.

:class:`Outbox` collects the commands one entry point of the session produces; the session
hands its list back to the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.core.commands import RESCHEDULE, CloseLeg, Command, Notice, Send
from engine.language.peer import CompiledPeer
from engine.language.protocol import CompiledLeg


class Leg:
    """One side of one call; the model its protocol leg's shared Machine moves.

    ``state`` is set by the Machine. Ask :meth:`in_role` what the state means (``"live"``,
    ``"opening"``, ...): states have the names a protocol designer gives them.
    """

    state: str

    def __init__(self, compiled: CompiledLeg, peer: CompiledPeer, env: dict[str, Any]) -> None:
        self.name = compiled.name
        self.compiled = compiled
        self.peer = peer
        #: extraction roots of incoming messages: ``$query``, ``$path``, ``$header``
        self.env = env
        #: template variables of outgoing messages (filled when the call starts)
        self.ctx: dict[str, Any] = {"seq": 0, "media_seq": 0, "media_timestamp": 0, "played_ms": 0}
        #: states whose media frames go straight to the audio path (derived from the Machine)
        self.media_states = compiled.media_states
        self.close_sent = False
        self.frames_in = 0
        self.frames_out = 0

    def __repr__(self) -> str:
        return f"<{self.name} leg in {getattr(self, 'state', '?')}>"

    def in_role(self, role: str) -> bool:
        """Whether the leg's current state has ``role`` in the protocol."""
        return self.state in self.compiled.role_states[role]

    @property
    def live(self) -> bool:
        """The call is up on this leg: commands and audio may be sent to its peer."""
        return self.state in self.compiled.role_states["live"]

    @property
    def finished(self) -> bool:
        """The leg is in a final state: nothing more happens on it."""
        return self.state in self.compiled.final


class Outbox:
    """The commands of one session call, in order, and the helpers that add them."""

    __slots__ = ("items", "rescheduled")

    def __init__(self) -> None:
        self.items: list[Command] = []
        self.rescheduled = False

    def reset(self) -> list[Command]:
        """Start a new list (one per session entry point) and return it."""
        self.items = []
        self.rescheduled = False
        return self.items

    def note(
        self, code: str, leg: str, message: str, level: str = "info", fields: Mapping[str, Any] | None = None
    ) -> None:
        """Add a :class:`Notice` for the logs and metrics."""
        self.items.append(Notice(code, leg, message, level, fields or {}))

    def send(self, leg: Leg, template: str, values: Mapping[str, Any]) -> bool:
        """Render ``leg``'s ``template`` with ``values`` and send it; ``False`` when the peer's
        spec has no such message."""
        tmpl = leg.peer.templates.get(template)
        if tmpl is None:
            return False
        ctx = leg.ctx
        if not tmpl.binary:
            ctx["seq"] += 1  # counts messages, not binary audio frames (Genesys numbers its JSON)
        self.items.append(Send(leg.name, tmpl.render(values, ctx), tmpl.binary))
        leg.frames_out += 1
        return True

    def close(self, leg: Leg, code: int, reason: str) -> None:
        """Close ``leg`` once; later closes of the same leg add nothing."""
        if not leg.close_sent:
            leg.close_sent = True
            self.items.append(CloseLeg(leg.name, code, reason[:120]))

    def reschedule(self) -> None:
        """Tell the adapter the next deadline may have moved earlier (once per list)."""
        if not self.rescheduled:
            self.rescheduled = True
            self.items.append(RESCHEDULE)
