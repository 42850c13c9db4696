"""Dotted paths into messages (``media.payload``, ``payload[0].id``) compiled to fast getters.

A path may also start at one of the call's other sources:

``$frame``           the raw bytes of a binary frame
``$message``         the whole decoded JSON message
``$query.NAME``      a query parameter of the WebSocket URL (``?sample-rate=16000``)
``$path.NAME``       a part of the route (``agent_id``, ``virtual_number``, ...)
``$header.NAME``     an HTTP header of the upgrade request (lower-case name)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import PathSyntaxError

MISSING: Any = object()
"""Returned by getters when the path leads nowhere (distinct from a JSON ``null``)."""

ROOTS = ("$frame", "$message", "$query", "$path", "$header")

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")

Getter = Callable[[Any, Mapping[str, Any]], Any]


def parse(path: str) -> tuple[str, tuple[str | int, ...]]:
    """Split ``path`` into its root (``""`` for the message) and its steps."""
    root = ""
    rest = path
    if path.startswith("$"):
        root, _, rest = path.partition(".")
        if root not in ROOTS:
            raise PathSyntaxError(f"unknown path root {root!r} (known: {', '.join(ROOTS)})")
        if root in ("$frame", "$message"):
            if rest:
                if root == "$frame":
                    raise PathSyntaxError("$frame is the whole binary frame; it has no fields")
            else:
                return root, ()
        elif not rest:
            raise PathSyntaxError(f"{root} needs a name, e.g. {root}.name")
    steps: list[str | int] = []
    pos = 0
    expect_dot = False
    while pos < len(rest):
        if expect_dot and rest[pos] == ".":
            pos += 1
            expect_dot = False
            continue
        match = _STEP.match(rest, pos)
        if not match or match.end() == pos:
            raise PathSyntaxError(f"cannot read {path!r} at character {pos + 1}")
        key, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (quoted or key))
        pos = match.end()
        expect_dot = pos < len(rest) and rest[pos] == "."
    if not steps and root == "":
        raise PathSyntaxError("empty path")
    return root, tuple(steps)


def compile_getter(path: str) -> Getter:
    """A function ``(message, env) -> value or MISSING``; ``env`` holds ``frame``, ``query``,
    ``path``, ``header`` for the ``$`` roots."""
    root, steps = parse(path)
    if root == "$frame":
        return lambda message, env: env.get("frame", MISSING)
    if root in ("$query", "$path", "$header"):
        source = root[1:]
        key = steps[0]
        key = key.lower() if root == "$header" and isinstance(key, str) else key

        def from_env(message: Any, env: Mapping[str, Any]) -> Any:
            return env.get(source, {}).get(key, MISSING)

        return from_env
    if root == "$message" and not steps:
        return lambda message, env: message
    # Specialise the common shallow cases: they run for every media frame.
    if len(steps) == 1 and isinstance(steps[0], str):
        (a,) = steps
        return lambda m, env: m.get(a, MISSING) if type(m) is dict else MISSING
    if len(steps) == 2 and all(isinstance(s, str) for s in steps):
        a, b = steps

        def two(m: Any, env: Mapping[str, Any]) -> Any:
            inner = m.get(a, MISSING) if type(m) is dict else MISSING
            return inner.get(b, MISSING) if type(inner) is dict else MISSING

        return two

    def walk(m: Any, env: Mapping[str, Any]) -> Any:
        node = m
        for step in steps:
            if isinstance(step, int):
                if type(node) is not list or step >= len(node):
                    return MISSING
                node = node[step]
            else:
                if type(node) is not dict:
                    return MISSING
                node = node.get(step, MISSING)
                if node is MISSING:
                    return MISSING
        return node

    return walk
