"""What a :class:`~engine.core.session.CallSession` asks its adapter to do.

The core never touches a socket: every ``receive_*``/``on_timer`` call returns a list of these,
in order, and the adapter carries them out. ``leg`` is ``"telephony"`` or ``"ai"``.

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


Command = Send | OpenLeg | CloseLeg | Notice
