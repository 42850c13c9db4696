"""Outgoing message templates, compiled once into a cheap ``render``.

A template is the JSON message as the peer expects it, with ``${name}`` where a value goes::

    {event: media, streamSid: "${stream_id}", media: {payload: "${audio}"}}

``${name}``        the value, JSON-typed (bytes such as ``audio`` become base64 strings)
``${name:str}``    the value as a string (``${sequence:str}`` -> ``"12"``); also ``:int``, ``:float``
``${name?}``       optional: when the call has no value, the key is left out
``"v2:${name}"``   a placeholder inside a longer string formats the value into it
``{$frame: binary}``  not JSON at all: the message is a binary frame carrying ``${audio}``

Rendering serialises the template once at compile time with sentinels, splits the bytes at
them, and joins the static pieces with the encoded values: one ``orjson.dumps`` per value and
a ``bytes.join`` per message, instead of building and dumping a dict per frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pybase64

from engine.errors import LocalProtocolError, ProtocolErrorKind, TemplateSyntaxError
from engine.language.paths import MISSING

_WHOLE = re.compile(r"^\$\{([a-z_][a-z0-9_]*)(?::(str|int|float))?(\?)?\}$")
_INNER = re.compile(r"\$\{([a-z_][a-z0-9_]*)(?::(str|int|float))?\}")
_SENTINEL = re.compile(rb'"\\u0000(\d+)\\u0000"')


@dataclass(frozen=True, slots=True)
class Slot:
    """One place a value goes: the variable, its conversion, and whether it may be absent."""

    name: str
    convert: str | None
    optional: bool
    fmt: str | None  # a longer string the value is formatted into


def _encode(value: Any) -> bytes:
    if type(value) is bytes:
        return b'"' + pybase64.b64encode(value) + b'"'
    return orjson.dumps(value)


def _as_str(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is float and value.is_integer():
        return str(int(value))  # counters kept as floats (media_timestamp) read as "120", not "120.0"
    return str(value)


_CONVERT: dict[str | None, Callable[[Any], Any]] = {
    None: lambda v: v,
    "str": _as_str,
    "int": lambda v: round(v) if type(v) is float else int(v),
    "float": float,
}


class Template:
    """A compiled outgoing message. ``render(values, context)`` returns the bytes to send."""

    __slots__ = ("_parts", "_slots", "_structure", "binary", "has_optional", "name", "variables")

    def __init__(self, name: str, template: Any) -> None:
        self.name = name
        self.binary = isinstance(template, dict) and template.get("$frame") == "binary"
        slots: list[Slot] = []
        if self.binary:
            extra = set(template) - {"$frame"}
            if extra:
                raise TemplateSyntaxError((sorted(extra)[0],), "a $frame template has no other keys")
            slots.append(Slot("audio", None, False, None))
            self._structure: Any = None
            self._parts: tuple[bytes, ...] = ()
        else:
            self._structure = self._mark(template, (), slots)
            dumped = orjson.dumps(self._structure)
            pieces = _SENTINEL.split(dumped)
            # split() alternates static text and captured slot numbers
            self._parts = tuple(pieces[0::2])
            order = [int(n) for n in pieces[1::2]]
            if order != list(range(len(slots))):
                raise TemplateSyntaxError((), "internal: placeholder order mismatch")
        self._slots = tuple(slots)
        self.has_optional = any(s.optional for s in slots)
        self.variables = frozenset(s.name for s in slots if s.fmt is None) | frozenset(
            m.group(1) for s in slots if s.fmt for m in _INNER.finditer(s.fmt)
        )

    def _mark(self, node: Any, path: tuple[str | int, ...], slots: list[Slot]) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    raise TemplateSyntaxError((*path, str(key)), "keys must be strings")
                if "${" in key:
                    raise TemplateSyntaxError((*path, key), "placeholders go in values, not keys")
                if key.startswith("$"):
                    raise TemplateSyntaxError((*path, key), f"unknown directive {key!r}")
                out[key] = self._mark(value, (*path, key), slots)
            return out
        if isinstance(node, list):
            return [self._mark(v, (*path, i), slots) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            whole = _WHOLE.match(node)
            if whole:
                slots.append(Slot(whole.group(1), whole.group(2), bool(whole.group(3)), None))
            else:
                if not _INNER.search(node) or "${" in _INNER.sub("", node):
                    raise TemplateSyntaxError(path, f"bad placeholder in {node!r}")
                slots.append(Slot("", None, False, node))
            return f"\x00{len(slots) - 1}\x00"
        return node

    def _value(self, slot: Slot, values: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
        if slot.fmt is not None:

            def sub(m: re.Match[str]) -> str:
                v = self._value(Slot(m.group(1), m.group(2) or "str", False, None), values, context)
                return str(v)

            return _INNER.sub(sub, slot.fmt)
        value = values.get(slot.name, MISSING)
        if value is MISSING or value is None:
            value = context.get(slot.name, MISSING)
        if value is MISSING or value is None:
            if slot.optional:
                return MISSING
            raise LocalProtocolError(
                f"message {self.name!r} needs ${{{slot.name}}}, which this call does not have",
                kind=ProtocolErrorKind.TEMPLATE,
            )
        try:
            return _CONVERT[slot.convert](value)
        except (TypeError, ValueError):
            raise LocalProtocolError(
                f"message {self.name!r}: ${{{slot.name}}} = {value!r} is not a {slot.convert}",
                kind=ProtocolErrorKind.TEMPLATE,
            ) from None

    def render(self, values: Mapping[str, Any], context: Mapping[str, Any]) -> bytes:
        """The message bytes (a JSON text frame, or the raw audio of a binary template)."""
        if self.binary:
            audio = values.get("audio", MISSING)
            if type(audio) is not bytes:
                raise LocalProtocolError(f"message {self.name!r} needs audio bytes", kind=ProtocolErrorKind.TEMPLATE)
            return audio
        filled = [self._value(slot, values, context) for slot in self._slots]
        if self.has_optional and any(v is MISSING for v in filled):
            return orjson.dumps(self._fill(self._structure, filled), option=orjson.OPT_PASSTHROUGH_DATACLASS)
        parts = self._parts
        out = [parts[0]]
        for index, value in enumerate(filled):
            out.append(_encode(value))
            out.append(parts[index + 1])
        return b"".join(out)

    def match(self, message: Any) -> dict[str, Any] | None:
        """If ``message`` (decoded JSON) has this template's shape, the values of its slots.

        Every constant of the template must be there with the same value; slots may be absent
        only when optional. Slots formatted into longer text are matched on their constant
        prefix. ``audio`` comes back as bytes. Used by test peers and the conformance kit to
        read what callbridge sent, with no per-platform code.
        """
        if self.binary:
            return {"audio": message} if isinstance(message, bytes | bytearray) else None
        values: dict[str, Any] = {}
        return values if self._match(self._structure, message, values) else None

    def _match(self, node: Any, value: Any, values: dict[str, Any]) -> bool:
        if isinstance(node, str) and node.startswith("\x00") and node.endswith("\x00"):
            slot = self._slots[int(node[1:-1])]
            if slot.fmt is not None:
                head = slot.fmt.split("${", 1)[0]
                return isinstance(value, str) and value.startswith(head)
            if slot.name == "audio" and isinstance(value, str):
                try:
                    value = pybase64.b64decode(value, validate=True)
                except ValueError:
                    return False
            values[slot.name] = value
            return True
        if isinstance(node, dict):
            if not isinstance(value, dict):
                return False
            for key, sub in node.items():
                if key not in value:
                    if self._optional(sub):
                        continue
                    return False
                if not self._match(sub, value[key], values):
                    return False
            return True
        if isinstance(node, list):
            return (
                isinstance(value, list)
                and len(value) == len(node)
                and all(self._match(n, v, values) for n, v in zip(node, value, strict=True))
            )
        return type(node) is type(value) and node == value

    def _optional(self, node: Any) -> bool:
        if isinstance(node, str) and node.startswith("\x00"):
            return self._slots[int(node[1:-1])].optional
        if isinstance(node, dict):
            return all(self._optional(v) for v in node.values())
        return False

    def _fill(self, node: Any, filled: list[Any]) -> Any:
        """Slow path for templates with absent optional values: rebuild, dropping those keys."""
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                resolved = self._fill(value, filled)
                if resolved is not MISSING:
                    out[key] = resolved
            # An object whose every member was an absent optional goes too.
            return out if out or not node else MISSING
        if isinstance(node, list):
            return [v for v in (self._fill(x, filled) for x in node) if v is not MISSING]
        if isinstance(node, str) and node.startswith("\x00") and node.endswith("\x00"):
            value = filled[int(node[1:-1])]
            if type(value) is bytes:
                return pybase64.b64encode(value).decode()
            return value
        return node
