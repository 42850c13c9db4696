"""The commands a :class:`~engine.core.session.CallSession` gives its adapter.

The core never touches a socket or a clock: every ``receive_*``/``on_timer`` call returns a list
of these, in order, and the adapter carries them out in that order. ``leg`` is ``"telephony"``
or ``"ai"``. (The protocol's named behaviours, ``actions:`` in ``protocol.yaml``, are what the
core runs; commands are what it asks the adapter to do.)

They are named tuples: immutable, and cheap enough to build one per audio frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

TELEPHONY = "telephony"
AI = "ai"


class Send(NamedTuple):
    """Send ``data`` on ``leg``: a text frame of JSON bytes, or a binary frame when ``binary``."""

    leg: str
    data: bytes
    binary: bool = False


class OpenLeg(NamedTuple):
    """Open the AI leg: a WebSocket client to ``url`` with these headers and subprotocols."""

    leg: str
    url: str
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...] = ()
    attempt: int = 1


class CloseLeg(NamedTuple):
    """Close ``leg`` with a WebSocket close code and a short reason."""

    leg: str
    code: int
    reason: str = ""


class Notice(NamedTuple):
    """Something operators should see: logged with the call id, counted in metrics.

    ``code`` is a stable dotted name (``violation.unknown``, ``mark.cleared``, ``playout.overrun``).
    """

    code: str
    leg: str
    message: str
    level: str = "info"  # debug | info | warning | error
    fields: Mapping[str, Any] = MappingProxyType({})


class Reschedule(NamedTuple):
    """The call's next deadline may have moved earlier: read ``next_deadline()`` again.

    At most one per returned list. Without one, the deadline the adapter last read still holds
    (most media frames), so it need not recompute it.
    """


RESCHEDULE = Reschedule()

Command = Send | OpenLeg | CloseLeg | Notice | Reschedule
