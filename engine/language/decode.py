"""Decode one incoming frame: which of the peer's messages it is, and the canonical fields in it.

This is the per-frame half of a peer spec (:mod:`engine.language.peer` is the compile-time
half, which builds one :class:`Decoder` per spec). Every frame of every call comes through
:meth:`Decoder.decode`, so everything a spec allows to be decided in advance was decided by
the compiler, and ``make native`` compiles this module.

Recognising a message is indexed by the key most text patterns test for equality (``event``
for Twilio, ``type`` for jambonz): one dict lookup, then the few remaining conditions of the
patterns filed under that value, most specific first (``{event: media, track: inbound}``
before ``{event: media}``); patterns the index cannot file are tried after, in the same order.
Binary frames are tried against the binary patterns only.

A frame is never dropped silently: it decodes, or it is a known message that means nothing
(an ``ignore`` pattern that asks for no reply: ``None``), or :exc:`~engine.errors.RemoteProtocolError` says what is
wrong with it, with the kind the protocol's policies are keyed by (``MALFORMED``, ``UNKNOWN``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from engine.errors import (
    CLOSE_INVALID_DATA,
    CLOSE_UNSUPPORTED_DATA,
    FieldError,
    ProtocolErrorKind,
    RemoteProtocolError,
)
from engine.language.extract import Condition, FieldRule

_MALFORMED = ProtocolErrorKind.MALFORMED
_UNKNOWN = ProtocolErrorKind.UNKNOWN


@dataclass(frozen=True, slots=True)
class Pattern:
    """One kind of incoming message: how to recognise it and what canonical events it carries.

    Built by the peer compiler, one per ``message_patterns`` entry (and per ``ignore`` entry);
    read it to learn what a decoded frame asks for: ``replies`` to send, ``remember`` to keep.
    """

    key: str  # the message_patterns key it was declared under
    emits: tuple[str, ...]
    frame: str  # text | binary
    conditions: tuple[Condition, ...]
    rules: tuple[FieldRule, ...]
    replies: tuple[str, ...]
    ignore: bool = False
    path: tuple[str | int, ...] = field(default=(), compare=False)
    extract: Any = field(default=None, compare=False, repr=False)  # compiled by compile_extractor
    #: the x_ fields it extracts: remembered in the leg's template context when it arrives
    remember: tuple[str, ...] = field(default=(), compare=False)
    #: auto-detection evidence only (``fingerprint:``); never consulted when decoding
    fingerprint: tuple[Condition, ...] = field(default=(), compare=False)

    def matches(self, message: Any, env: Mapping[str, Any]) -> bool:
        """Whether every detection condition holds for ``message`` (``None`` for a binary frame,
        whose bytes are ``env["frame"]``)."""
        for condition in self.conditions:  # noqa: SIM110 - a plain loop beats all(<genexpr>) per frame
            if not condition.holds(message, env):
                return False
        return True


class Decoded(NamedTuple):
    """What one frame meant.

    ``pattern`` is the message it was recognised as (its ``replies`` and ``remember`` say what
    to answer and what to keep for later templates), ``events`` the canonical events it carries,
    in the order they apply, and ``fields`` their values, already coerced to canonical types.
    """

    pattern: Pattern
    events: tuple[str, ...]
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Decoder:
    """Recognises the frames of one peer spec and extracts their fields.

    Build it once per compiled spec with :meth:`from_patterns`; then call :meth:`decode` for
    every frame of every call, from any number of calls at once (it keeps no state).
    """

    kind: str  # telephony | ai: the leg named in errors
    name: str  # the spec's short name, for messages
    index_key: str | None
    indexed: Mapping[Any, tuple[Pattern, ...]]
    unindexed: tuple[Pattern, ...]
    binary: tuple[Pattern, ...]

    @classmethod
    def from_patterns(cls, kind: str, name: str, patterns: tuple[Pattern, ...]) -> Decoder:
        """The decoder for a spec's compiled ``patterns`` (text and binary, ``ignore`` included),
        indexed by the key most text patterns test (see the module docstring)."""
        key, indexed, unindexed = _index([p for p in patterns if p.frame == "text"])
        return cls(
            kind, name, key, MappingProxyType(indexed), unindexed, tuple(p for p in patterns if p.frame == "binary")
        )

    def detect(self, message: Any, env: Mapping[str, Any]) -> Pattern | None:
        """The pattern an already parsed JSON message matches, or ``None`` when none does."""
        if self.index_key is not None and type(message) is dict:
            value = message.get(self.index_key)
            if type(value) in (str, int, bool):
                for pattern in self.indexed.get(value, ()):
                    if pattern.matches(message, env):
                        return pattern
        for pattern in self.unindexed:
            if pattern.matches(message, env):
                return pattern
        return None

    def decode(self, frame: str | bytes, env: Mapping[str, Any]) -> Decoded | None:
        """Turn one WebSocket frame into canonical events and their fields.

        ``env`` holds what ``$`` paths read besides the message (``query``, ``path``,
        ``header``: the call's route). Returns ``None`` for a known message that means nothing
        (an ``ignore`` pattern that asks for no reply and keeps no field).

        Raises :exc:`~engine.errors.RemoteProtocolError` of kind ``MALFORMED`` (not JSON, not
        an object, a field that will not coerce) or ``UNKNOWN`` (no pattern matches): apply the
        leg's policy for that kind.
        """
        if type(frame) is not str:
            if not self.binary:
                raise RemoteProtocolError(
                    f"binary frame of {len(frame)} bytes, but {self.name} sends no binary frames",
                    leg=self.kind,
                    kind=_UNKNOWN,
                    close_code=CLOSE_UNSUPPORTED_DATA,
                )
            benv = dict(env)
            benv["frame"] = frame if type(frame) is bytes else bytes(frame)  # type: ignore[arg-type]
            for pattern in self.binary:
                if pattern.matches(None, benv):
                    return self._extract(pattern, None, benv)
            raise RemoteProtocolError(
                "binary frame matches no pattern", leg=self.kind, kind=_UNKNOWN, close_code=CLOSE_UNSUPPORTED_DATA
            )
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise RemoteProtocolError(
                f"malformed JSON: {exc.msg} at character {exc.pos}",
                leg=self.kind,
                kind=_MALFORMED,
                close_code=CLOSE_INVALID_DATA,
            ) from None
        if type(message) is not dict:
            raise RemoteProtocolError(
                f"expected a JSON object, got {type(message).__name__}",
                leg=self.kind,
                kind=_MALFORMED,
                close_code=CLOSE_INVALID_DATA,
            )
        found = self.detect(message, env)
        if found is None:
            hint = message.get(self.index_key) if self.index_key else None
            what = f"{self.index_key}={hint!r}" if hint is not None else "no known shape"
            raise RemoteProtocolError(
                f"unknown message ({what})", leg=self.kind, kind=_UNKNOWN, close_code=CLOSE_UNSUPPORTED_DATA
            )
        return self._extract(found, message, env)

    def _extract(self, pattern: Pattern, message: Any, env: Mapping[str, Any]) -> Decoded | None:
        if pattern.ignore and not (pattern.replies or pattern.remember):
            return None  # (an ignored message with a reply, e.g. ping -> pong, still answers)
        try:
            fields = pattern.extract(message, env)
        except FieldError as exc:
            raise RemoteProtocolError(
                f"{pattern.emits[0]} message: {exc}", leg=self.kind, kind=_MALFORMED, close_code=CLOSE_INVALID_DATA
            ) from None
        return Decoded(pattern, pattern.emits, fields)


def _index(text: list[Pattern]) -> tuple[str | None, dict[Any, tuple[Pattern, ...]], tuple[Pattern, ...]]:
    """Pick the key most text patterns test for equality and index them by its value."""
    counts: dict[str, int] = {}
    for pattern in text:
        for condition in pattern.conditions:
            if condition.op == "eq" and "." not in condition.path and not condition.path.startswith("$"):
                counts[condition.path] = counts.get(condition.path, 0) + 1
    if not counts:
        return None, {}, tuple(sorted(text, key=lambda p: -len(p.conditions)))
    key = max(counts, key=lambda k: counts[k])
    indexed: dict[Any, list[Pattern]] = {}
    rest: list[Pattern] = []
    for pattern in text:
        value = next((c.arg for c in pattern.conditions if c.path == key and c.op == "eq"), None)
        if value is None or type(value) not in (str, int, bool):
            rest.append(pattern)
        else:
            indexed.setdefault(value, []).append(pattern)
    # Most specific first, so {event: media, track: inbound} wins over {event: media}.
    return (
        key,
        {v: tuple(sorted(ps, key=lambda p: -len(p.conditions))) for v, ps in indexed.items()},
        tuple(sorted(rest, key=lambda p: -len(p.conditions))),
    )
