"""Every error callbridge raises, in one tree.

``CallbridgeError``
├── ``SpecError``            one located mistake in a spec or config file
├── ``SpecErrors``           all the mistakes found in one load, reported together
├── ``ProtocolError``        a message broke a leg's protocol; carries leg, call and close code
│   ├── ``RemoteProtocolError``  the peer sent something wrong (malformed, unknown, out of order)
│   └── ``LocalProtocolError``   callbridge was asked to do something the protocol forbids
├── ``CodecError``           audio could not be decoded or encoded; says which call, leg and frame
└── ``UsageError``           a command line or API call that cannot be carried out as asked

Messages are short statements of fact, lower case, with the place first
(``specs/providers/x.yaml:12:5: $.events.incoming: ...``) so that editors can jump to it.
Nothing here is ever shown to a user as a traceback: the CLI and the server print ``str(error)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: WebSocket close codes (RFC 6455 §7.4.1) that callbridge uses when a policy says "close".
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class CallbridgeError(Exception):
    """Base class of every error callbridge raises on purpose."""


@dataclass(frozen=True)
class Location:
    """Where in which file something is. ``line`` and ``col`` are 1-based; 0 means unknown."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


class SpecError(CallbridgeError):
    """One mistake in a spec or config file, with its file, line, column and JSON path."""

    def __init__(self, location: Location, path: str, message: str) -> None:
        self.location = location
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.location}: {self.path}: {self.message}"

    def __reduce__(self) -> tuple[type[SpecError], tuple[Location, str, str]]:
        return (type(self), (self.location, self.path, self.message))


class SpecErrors(CallbridgeError):
    """All the mistakes found while loading specs, sorted by file and line."""

    def __init__(self, errors: Iterable[SpecError]) -> None:
        self.errors = sorted(
            errors, key=lambda e: (e.location.file, e.location.line, e.location.col, e.path)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ProtocolError(CallbridgeError):
    """A message broke the rules of a leg's protocol.

    ``close_code`` is the WebSocket close code to use if the declared policy is to close.
    """

    def __init__(
        self,
        message: str,
        *,
        leg: str = "",
        call_id: str = "",
        reason: str = "protocol",
        close_code: int = CLOSE_PROTOCOL_ERROR,
    ) -> None:
        self.message = message
        self.leg = leg
        self.call_id = call_id
        self.reason = reason
        self.close_code = close_code
        super().__init__(str(self))

    def __str__(self) -> str:
        where = " ".join(p for p in (f"call {self.call_id}" if self.call_id else "",
                                     f"{self.leg} leg" if self.leg else "") if p)
        return f"{where}: {self.message}" if where else self.message


class RemoteProtocolError(ProtocolError):
    """The peer sent something its spec does not allow (malformed, unknown, out of order)."""


class LocalProtocolError(ProtocolError):
    """callbridge was asked to send something its spec does not allow."""


class CodecError(CallbridgeError):
    """Audio could not be converted. Names the call, the leg and the frame index."""

    def __init__(self, message: str, *, call_id: str = "", leg: str = "", frame: int = -1) -> None:
        self.message = message
        self.call_id = call_id
        self.leg = leg
        self.frame = frame
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.call_id:
            parts.append(f"call {self.call_id}")
        if self.leg:
            parts.append(f"{self.leg} leg")
        if self.frame >= 0:
            parts.append(f"frame {self.frame}")
        return f"{' '.join(parts)}: {self.message}" if parts else self.message


class UsageError(CallbridgeError):
    """A command line or API request that cannot be carried out as asked."""
