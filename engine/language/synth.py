"""A spec read backwards: build the messages a peer would send, and read the ones callbridge
sends it.

callbridge's own tools act as the platform (``callbridge call``) or as the AI provider (test
servers, the conformance kit) for any spec, with no per-platform code:

``build_incoming(peer, event, values)``
    a frame the peer could send that its spec decodes to ``event`` with these field values:
    the detection pattern's constants, and each extracted field written at its path
    (base64 for audio in JSON, a raw binary frame where the pattern is binary).
``read_outgoing(peer, frame)``
    which outgoing template a frame callbridge sent matches, and the values in it.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Mapping
from typing import Any

import orjson

from engine.errors import UsageError
from engine.language.decode import Pattern
from engine.language.paths import parse
from engine.language.peer import CompiledPeer


def pattern_for(peer: CompiledPeer, event: str, *, binary: bool | None = None) -> Pattern:
    """The first pattern that emits ``event`` (preferring binary frames when ``binary``)."""
    candidates = [p for p in peer.patterns if not p.ignore and event in p.emits]
    if binary is not None:
        preferred = [p for p in candidates if (p.frame == "binary") == binary]
        candidates = preferred or candidates
    # A pattern that emits only this event is the most faithful example of it.
    candidates.sort(key=lambda p: (len(p.emits) > 1, -len(p.rules)))
    if not candidates:
        raise UsageError(f"{peer.name} has no incoming message for {event!r}")
    return candidates[0]


def _put(message: dict[str, Any], steps: tuple[str | int, ...], value: Any) -> None:
    node: Any = message
    for index, step in enumerate(steps[:-1]):
        nxt = steps[index + 1]
        if isinstance(step, int):
            while len(node) <= step:
                node.append({} if not isinstance(nxt, int) else [])
            node = node[step]
        else:
            node = node.setdefault(step, [] if isinstance(nxt, int) else {})
    last = steps[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
        node[last] = value
    else:
        node[last] = value


def _placeholder(peer: CompiledPeer, pattern: Pattern, path: str, values: Mapping[str, Any]) -> Any:
    """A value for a path that must merely be present: the value of the field read there when
    the caller gave one, else something of the right kind (the spec's own audio defaults)."""
    for rule in pattern.rules:
        if rule.paths and rule.paths[0] == path:
            if rule.field in values:
                return _wire(values[rule.field], rule.mapping)
            fmt = peer.audio.inbound
            if rule.field == "sample_rate":
                return fmt.sample_rate
            if rule.field == "channels":
                return fmt.channels
            break
    return values.get(path.rsplit(".", 1)[-1], "x")


def _wire(value: Any, mapping: Mapping[Any, Any] | None) -> Any:
    if mapping:
        reverse: dict[Any, Any] = {}
        for key, mapped in mapping.items():
            reverse.setdefault(mapped, key)  # the first spelling that maps to it
        value = reverse.get(value, value)
    if isinstance(value, bytes | bytearray):
        return b2a_base64(bytes(value), newline=False).decode()
    return value


def _meet(
    message: dict[str, Any],
    conditions: Any,
    peer: CompiledPeer,
    pattern: Pattern,
    values: dict[str, Any],
    *,
    fill_present: bool,
) -> None:
    """Write into ``message`` what it takes to meet ``conditions``. ``present`` paths get a
    value unless ``fill_present`` is off and the message already has one there."""
    for condition in conditions:
        root, steps = parse(condition.path)
        if root or not steps:
            continue
        if condition.op == "eq":
            _put(message, steps, condition.arg)
        elif condition.op == "in":
            _put(message, steps, sorted(condition.arg, key=str)[0])
        elif condition.op == "present" and (fill_present or not _has(message, steps)):
            _put(message, steps, _placeholder(peer, pattern, condition.path, values))
        elif condition.op == "absent":
            _drop(message, steps)
        elif condition.op == "prefix":
            _put(message, steps, condition.arg + "x")


def build_incoming(
    peer: CompiledPeer, event: str, values: dict[str, Any] | None = None, *, binary: bool | None = None
) -> str | bytes:
    """A frame ``peer`` could send that decodes to ``event`` carrying ``values``."""
    values = values or {}
    if binary is None and event == "media":
        binary = peer.audio.inbound_payload == "binary"
    pattern = pattern_for(peer, event, binary=binary)
    if pattern.frame == "binary":
        audio = values.get("audio", b"")
        return bytes(audio)
    message: dict[str, Any] = {}
    _meet(message, pattern.conditions, peer, pattern, values, fill_present=True)
    for rule in pattern.rules:
        if rule.field not in values or not rule.paths:
            continue
        root, steps = parse(rule.paths[0])
        if root or not steps:
            continue
        _put(message, steps, _wire(values[rule.field], rule.mapping))
    # A typical message of this platform also meets its fingerprint (auto-detection evidence).
    _meet(message, pattern.fingerprint, peer, pattern, values, fill_present=False)
    return orjson.dumps(message).decode()


def _has(message: Any, steps: tuple[str | int, ...]) -> bool:
    node = message
    for step in steps:
        found = (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and step < len(node)
        )
        if not found:
            return False
        node = node[step]
    return True


def _drop(message: Any, steps: tuple[str | int, ...]) -> None:
    node = message
    for step in steps[:-1]:
        if not isinstance(node, dict) or step not in node:
            return
        node = node[step]
    if isinstance(node, dict):
        node.pop(steps[-1], None)


def read_outgoing(peer: CompiledPeer, frame: str | bytes) -> tuple[str, dict[str, Any]] | None:
    """``(template name, values)`` for a frame callbridge sent to ``peer``, or ``None``."""
    if isinstance(frame, bytes | bytearray) and not _looks_like_json(frame, peer):
        for name, template in peer.templates.items():
            if template.binary:
                return name, {"audio": bytes(frame)}
        return None
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    best: tuple[int, str, dict[str, Any]] | None = None
    for name, template in peer.templates.items():
        if template.binary:
            continue
        found = template.match(message)
        if found is not None:
            # The template with the most constants matched is the most specific one.
            score = len(orjson.dumps(template._structure))
            if best is None or score > best[0]:
                best = (score, name, found)
    return (best[1], best[2]) if best else None


def _looks_like_json(frame: bytes | bytearray, peer: CompiledPeer) -> bool:
    # Binary frames carry audio on binary+json platforms; text arrives as str from websockets,
    # but a caller may hand us the bytes of a JSON text frame.
    return peer.transport == "json" or (frame[:1] == b"{" and frame[-1:] == b"}")
