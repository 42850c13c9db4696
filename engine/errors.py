"""Every error callbridge raises, in one tree.

* :exc:`CallbridgeError`
    * :exc:`SpecError`: one located mistake in a spec or config file
    * :exc:`SpecErrors`: all the mistakes found in one load, reported together
    * :exc:`ExpressionError` (also :exc:`ValueError`): a path, condition or template in a spec
      cannot be compiled (Sans-I/O; never escapes the loader, which turns it into a
      :exc:`SpecError`)
        * :exc:`PathSyntaxError`
        * :exc:`ConditionError`
        * :exc:`TemplateSyntaxError`
    * :exc:`FieldError` (also :exc:`ValueError`): a value in an incoming message cannot become
      its canonical type (Sans-I/O; never escapes the decoder, which turns it into a
      :exc:`RemoteProtocolError`)
    * :exc:`ProtocolError`: a message broke a leg's protocol; carries its
      :class:`ProtocolErrorKind`, the leg, the call and the close code (Sans-I/O)
        * :exc:`RemoteProtocolError`: the peer sent something wrong
        * :exc:`LocalProtocolError`: callbridge was asked to send something the protocol forbids
    * :exc:`CodecError`: audio could not be decoded or encoded; says which call, leg and frame
    * :exc:`LegClosed` (also :exc:`EOFError`): a leg's connection closed while a message was
      awaited (I/O)
    * :exc:`CheckFailed`: a conformance check found a spec that does not do what it must
    * :exc:`UsageError`: a command line or API call that cannot be carried out as asked
        * :exc:`UnsupportedAudio` (also :exc:`ValueError`): an audio format a converter cannot
          handle
        * :exc:`BufferTooSmall` (also :exc:`ValueError`): an output buffer with too little room

Catch :exc:`CallbridgeError` to catch everything callbridge raises on purpose; anything else
escaping the engine is a bug. Classes that also derive from a builtin do so because callers
may already catch that builtin (``except ValueError`` around a resampler, ``except EOFError``
around a read).

Messages are short statements of fact, lower case, with the place first
(``specs/providers/x.yaml:12:5: $.events.incoming: ...``) so that editors can jump to it.
Nothing here is ever shown to a user as a traceback: the CLI and the server print ``str(error)``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "BufferTooSmall",
    "CallbridgeError",
    "CheckFailed",
    "CodecError",
    "ConditionError",
    "ExpressionError",
    "FieldError",
    "LegClosed",
    "LocalProtocolError",
    "Location",
    "PathSyntaxError",
    "ProtocolError",
    "ProtocolErrorKind",
    "RemoteProtocolError",
    "SpecError",
    "SpecErrors",
    "TemplateSyntaxError",
    "UnsupportedAudio",
    "UsageError",
]

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

#: a place inside a spec document, as the loader's JSON paths spell it (``("events", "outgoing")``)
_Path = tuple[str | int, ...]


class CallbridgeError(Exception):
    """Base class of every error callbridge raises on purpose.

    Catch it at the edge (the CLI, a request handler) and show ``str(error)``: every message is
    written to be read by the person who can fix the cause.
    """


# ------------------------------------------------------------------------------------ specs


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
    """Raised when a spec or config file cannot be read: one mistake, located.

    ``location`` is the file, line and column, ``path`` the JSON path inside the document
    (``$.events.incoming``), ``message`` what is wrong. The loader gathers them into
    :exc:`SpecErrors` rather than stopping at the first; a single one escapes only where one
    file is read on its own (:func:`engine.language.yamlload.load_file`). Fix the spec.
    """

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
    """Raised when loading specs or a config found mistakes: all of them, sorted by place.

    ``errors`` is the list of :exc:`SpecError`; ``str()`` is one line per mistake, ready to
    print. Nothing is loaded when this is raised: fix every line and load again.
    """

    def __init__(self, errors: Iterable[SpecError]) -> None:
        self.errors = sorted(
            errors, key=lambda e: (e.location.file, e.location.line, e.location.col, e.path)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ExpressionError(CallbridgeError, ValueError):
    """Raised when a path, condition or template written in a spec cannot be compiled.

    The compiler of a peer spec catches it and records a :exc:`SpecError` at the place the
    expression was written, so it reaches a caller only through the compiling functions
    themselves (:func:`engine.language.paths.compile_getter`,
    :func:`engine.language.extract.compile_condition`, :class:`engine.language.templates.Template`).
    The message says what is wrong, without the place.
    """


class PathSyntaxError(ExpressionError):
    """Raised when a path (``start.streamSid``, ``$query.sid``) cannot be parsed."""


class ConditionError(ExpressionError):
    """Raised when a detection condition is well formed but cannot be evaluated as written
    (``one_of`` listing objects, which no message value could equal)."""


class TemplateSyntaxError(ExpressionError):
    """Raised when an outgoing message template cannot be compiled.

    ``path`` says where inside the template (``("media", "payload")``); the compiler appends it
    to the template's own place in the spec.
    """

    def __init__(self, path: _Path, message: str) -> None:
        self.path = path
        super().__init__(message)


# --------------------------------------------------------------------------------- messages


class FieldError(CallbridgeError, ValueError):
    """Raised when a value in an incoming message cannot become its field's canonical type.

    Raised per frame by an extraction rule (``"abc"`` for an ``int`` field, a payload that is
    not base64); the message names the field and its path. The decoder turns it into a
    :exc:`RemoteProtocolError` of kind :attr:`ProtocolErrorKind.MALFORMED`, so outside
    :mod:`engine.language` only tests see it.
    """


class ProtocolErrorKind(enum.StrEnum):
    """What kind of rule a :exc:`ProtocolError` broke: branch on this, never on the message.

    The members are strings (the values below), so a kind can go straight into a log line, a
    notice code (``violation.malformed``) or an error message sent to the peer.
    """

    #: a frame that cannot be read as its peer's messages are written: not JSON, not an
    #: object, a field of the wrong type or missing; the spec's ``malformed`` policy applies
    MALFORMED = "malformed"
    #: a well-formed message that matches no pattern of the peer's spec (or a binary frame
    #: from a peer that sends none); the spec's ``unknown`` policy applies
    UNKNOWN = "unknown"
    #: platform detection: the first frames fit several platform specs equally; one more
    #: frame may tell them apart, otherwise the route must name the platform
    AMBIGUOUS = "ambiguous"
    #: an outgoing message could not be rendered: its template needs a value the call does
    #: not have, or one of the wrong type
    TEMPLATE = "template"
    #: none of the above (the default): the message says what happened
    OTHER = "other"


class ProtocolError(CallbridgeError):
    """Base class of the errors raised when a message breaks the rules of a leg's protocol.

    Raised by the Sans-I/O layer; never raised itself, only :exc:`RemoteProtocolError` and
    :exc:`LocalProtocolError`. ``kind`` says which rule (:class:`ProtocolErrorKind`), ``leg``
    which side (``telephony`` or ``ai``), ``call_id`` which call when known, ``message`` what
    happened, and ``close_code`` the WebSocket close code to send if the declared policy is to
    close the leg.
    """

    def __init__(
        self,
        message: str,
        *,
        leg: str = "",
        call_id: str = "",
        kind: ProtocolErrorKind = ProtocolErrorKind.OTHER,
        close_code: int = CLOSE_PROTOCOL_ERROR,
    ) -> None:
        self.message = message
        self.leg = leg
        self.call_id = call_id
        self.kind = kind
        self.close_code = close_code
        super().__init__(str(self))

    def __str__(self) -> str:
        where = " ".join(p for p in (f"call {self.call_id}" if self.call_id else "",
                                     f"{self.leg} leg" if self.leg else "") if p)
        return f"{where}: {self.message}" if where else self.message


class RemoteProtocolError(ProtocolError):
    """Raised when a peer sends something its spec does not allow.

    :meth:`engine.language.peer.CompiledPeer.decode` raises it with kind
    :attr:`~ProtocolErrorKind.MALFORMED` or :attr:`~ProtocolErrorKind.UNKNOWN`; the call core
    catches it and applies the spec's policy for that kind (ignore, count, reject or close with
    ``close_code``). Platform detection raises it with :attr:`~ProtocolErrorKind.UNKNOWN` or
    :attr:`~ProtocolErrorKind.AMBIGUOUS`: on ``AMBIGUOUS``, read one more frame and try again,
    else close the connection with ``close_code``.
    """


class LocalProtocolError(ProtocolError):
    """Raised when callbridge is asked to send something its spec does not allow.

    Mostly :attr:`~ProtocolErrorKind.TEMPLATE`: a message's template needs a value the call
    does not have (a reply before the value arrived), which the core notes and skips. Anywhere
    else it means the caller asked for the impossible: fix the calling code or the spec.
    """


# ------------------------------------------------------------------------------------ audio


class CodecError(CallbridgeError):
    """Raised when audio cannot be converted: the codec refused a frame, or no converter exists.

    ``call_id``, ``leg`` and ``frame`` (the frame's index, -1 when unknown) say which stream
    failed; the message carries the codec's own words. The call cannot go on in that
    direction: end it, or open the leg again with another format.
    """

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


# ------------------------------------------------------------------------------ connections


class LegClosed(CallbridgeError, EOFError):
    """Raised when a leg's WebSocket closed while a message was awaited (I/O).

    :meth:`engine.io.direct.DirectDelivery.next_message` raises it; the caller has nothing
    left to read and should drop the connection (the closing handshake is already done).
    """


# ------------------------------------------------------------------------------ conformance


class CheckFailed(CallbridgeError):
    """Raised when a conformance check finds a spec that does not do what it must.

    ``message`` says what the kit saw; ``where`` is the JSON path in the spec to blame, when
    the kit can tell. :func:`engine.conformance.run_conformance` catches it and reports a FAIL
    line located at ``where``; it never escapes the kit.
    """

    def __init__(self, message: str, where: _Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


# ------------------------------------------------------------------------------------ usage


class UsageError(CallbridgeError):
    """Raised when a command line or API call cannot be carried out as asked.

    The message says what was asked and what is possible instead; the arguments are wrong,
    not the data. Fix the call (or the command line); trying again unchanged fails again.
    """


class UnsupportedAudio(UsageError, ValueError):
    """Raised when a converter is asked for an audio format it cannot handle.

    An encoding, sample rate or channel count outside what the resampler, the transcoder or
    the Opus codec supports; the message lists what is supported. Raised when the converter
    is built, never per frame.
    """


class BufferTooSmall(UsageError, ValueError):
    """Raised when an output buffer has less room than the converted chunk needs.

    Raised by :meth:`engine.dsp.resample.Resampler.process_into` before any sample is written;
    size the buffer with :meth:`~engine.dsp.resample.Resampler.output_frames`.
    """
