"""Detection patterns and extraction maps: recognising a peer's message and pulling canonical
fields out of it.

Detection (``detection_pattern``) is a mapping of path -> condition:

``event: media``                 the value equals ``"media"``
``event: {one_of: [a, b]}``      the value is one of these
``start.streamSid: {present: true}``   the path exists (``false``: it must not)
``type: {prefix: "websocket:"}``       a string value starting with this
``equals: ...``                  explicit form of the first

Extraction (``extraction_map``) maps a canonical field to where its value is:

``stream_id: start.streamSid``                   a path
``stream_id: [stream_sid, streamSid]``           the first of these paths that exists
``sample_rate: {path: $query.sample-rate, default: 8000}``   any path root, with a default
``encoding: {path: start.media_format.encoding, map: {PCMU: MULAW}}``   value mapping
``custom: {path: extra_headers, decode: kv}``    ``a=b;c=d`` text to an object (also ``json``)
``channels: {value: 1}``                          a constant

Each value is then coerced to its canonical type from ``protocol.yaml`` (``"12"`` -> 12 for
an ``int`` field; base64 text -> bytes for ``audio``), so specs need not say it.
"""

from __future__ import annotations

from binascii import Error as BinasciiError
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pybase64

from engine.errors import ConditionError, FieldError
from engine.language.paths import MISSING, Getter, compile_getter


def _to_str(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(f"{value!r} is not text")
    return str(value)


def _number_text(text: str) -> str:
    # Platforms write numbers as strings, sometimes with units ("8000Hz", "16 kbps").
    head = text.strip()
    end = 0
    while end < len(head) and (head[end].isdigit() or head[end] in "+-."):
        end += 1
    return head[:end]


def _to_int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if type(value) is str:
        digits = _number_text(value)
        try:
            return int(digits) if "." not in digits else int(float(digits))
        except ValueError:
            pass
    raise FieldError(f"{value!r} is not an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type(value) is str:
        try:
            return float(_number_text(value))
        except ValueError:
            pass
    raise FieldError(f"{value!r} is not a number")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise FieldError(f"{value!r} is not a boolean")


def _to_bytes(value: Any) -> bytes:
    if type(value) is str:
        try:
            return pybase64.b64decode(value, validate=True)
        except (BinasciiError, ValueError):
            raise FieldError("payload is not valid base64") from None
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise FieldError(f"{type(value).__name__} is not audio (expected base64 text)")


def _to_object(value: Any) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise FieldError(f"{value!r} is not an object")


COERCE: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "bytes": _to_bytes,
    "object": _to_object,
}


def _decode_kv(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    out: dict[str, str] = {}
    for part in value.replace(",", ";").split(";"):
        key, sep, val = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = val.strip()
    return out


def _decode_json(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise FieldError("is not valid JSON text") from None


def _decode_base64(value: Any) -> Any:
    return _to_bytes(value) if isinstance(value, str) else value


DECODERS: dict[str, Callable[[Any], Any]] = {
    "kv": _decode_kv,
    "json": _decode_json,
    "base64": _decode_base64,
}


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one canonical field is read from a message."""

    field: str
    paths: tuple[str, ...]
    getters: tuple[Getter, ...]
    constant: Any
    default: Any
    mapping: Mapping[Any, Any] | None
    decode: Callable[[Any], Any] | None
    coerce: Callable[[Any], Any]
    required: bool

    def read(self, message: Any, env: Mapping[str, Any]) -> Any:
        """The coerced value, or ``MISSING``. Raises :class:`FieldError` with the field named."""
        value = self.constant
        if value is MISSING:
            for getter in self.getters:
                value = getter(message, env)
                if value is not MISSING and value is not None:
                    break
            else:
                value = self.default
                if value is MISSING:
                    if self.required:
                        raise FieldError(f"no value at {' or '.join(self.paths)} (field {self.field!r} is required)")
                    return MISSING
        if self.mapping is not None and type(value) in (str, int, float, bool):
            value = self.mapping.get(value, value)
        try:
            if self.decode is not None:
                value = self.decode(value)
            return self.coerce(value)
        except FieldError as exc:
            raise FieldError(f"field {self.field!r} at {' or '.join(self.paths) or 'value'}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Condition:
    """One detection condition, compiled: the value at ``path`` compared by ``op`` with ``arg``.

    Make one with :func:`compile_condition`; patterns hold them, fingerprints too.
    """

    path: str
    getter: Getter
    op: str  # eq | in | present | absent | prefix
    arg: Any

    def holds(self, message: Any, env: Mapping[str, Any]) -> bool:
        """Whether the condition is true of ``message`` (with ``env`` for ``$`` paths); a value
        of another JSON type never equals (``1`` is not ``true``, ``"1"`` is not ``1``)."""
        value = self.getter(message, env)
        op = self.op
        if op == "eq":
            return value is not MISSING and type(value) is type(self.arg) and value == self.arg
        if op == "in":
            return value is not MISSING and _hashable(value) and value in self.arg
        if op == "present":
            return value is not MISSING
        if op == "absent":
            return value is MISSING
        return type(value) is str and value.startswith(self.arg)


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def compile_condition(path: str, raw: Any) -> Condition:
    """Raises ``PathSyntaxError`` (from the path) or ``ConditionError`` for a bad condition."""
    getter = compile_getter(path)
    if isinstance(raw, dict):
        ((op, arg),) = raw.items()
        if op == "equals":
            return Condition(path, getter, "eq", arg)
        if op == "one_of":
            if not all(_hashable(a) for a in arg):
                raise ConditionError("one_of takes plain values (text, numbers, booleans)")
            return Condition(path, getter, "in", frozenset(arg))
        if op == "present":
            return Condition(path, getter, "present" if arg else "absent", None)
        return Condition(path, getter, "prefix", arg)
    return Condition(path, getter, "eq", raw)


def compile_rule(field: str, raw: Any, field_type: str, *, required: bool, binary_frame: bool) -> FieldRule:
    """Compile one extraction entry. Raises ``PathSyntaxError`` when a path is malformed."""
    constant: Any = MISSING
    default: Any = MISSING
    mapping = None
    decode_name = None
    explicit_type = None
    if isinstance(raw, str):
        paths: tuple[str, ...] = (raw,)
    elif isinstance(raw, list):
        paths = tuple(raw)
    else:
        raw_path = raw.get("path", ())
        paths = (raw_path,) if isinstance(raw_path, str) else tuple(raw_path)
        constant = raw.get("value", MISSING)
        default = raw.get("default", MISSING)
        mapping = raw.get("map")
        decode_name = raw.get("decode")
        explicit_type = raw.get("type")
        required = bool(raw.get("required", required))
    getters = tuple(compile_getter(p) for p in paths)
    ftype = explicit_type or field_type
    if ftype == "bytes" and not binary_frame and decode_name is None:
        decode_name = "base64"
    decode = DECODERS.get(decode_name) if decode_name not in (None, "none") else None
    if ftype == "bytes" and decode_name == "base64":
        decode = None  # the bytes coercion decodes base64 text itself
    return FieldRule(
        field,
        paths,
        getters,
        constant,
        default,
        dict(mapping) if mapping is not None else None,
        decode,
        COERCE[ftype],
        required,
    )
