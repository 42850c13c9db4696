"""callbridge: a declarative state-machine engine that bridges telephone calls to AI voice agents.

Import package ``engine``; distribution and command ``callbridge``.

The public API is importable from here:

* :func:`load_specs` compiles a folder of specs into a :class:`SpecSet` (or raises
  :exc:`SpecErrors` with every mistake);
* :class:`CallSession` is one call, Sans-I/O: give it what each leg sends and when
  (:class:`CallRoute` says which platform and number, :class:`AITarget` which AI backend), and
  carry out the :data:`Command` list it returns (:class:`Send`, :class:`OpenLeg`,
  :class:`CloseLeg`, :class:`Notice`, :class:`Reschedule`);
* every error callbridge raises derives from :exc:`CallbridgeError` (:mod:`engine.errors`).

The call core and the spec language load on first use, not on ``import engine``: the compiled
per-frame modules may only be imported after :func:`engine.native.guard` has decided whether
they match their source.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from engine import native as _native

_native.guard()  # before any per-frame module is imported: compiled builds only while they match the source

from engine.errors import (  # noqa: E402 - after the guard, like everything engine imports
    BufferTooSmall,
    CallbridgeError,
    CheckFailed,
    CodecError,
    ConditionError,
    ExpressionError,
    FieldError,
    LegClosed,
    LocalProtocolError,
    PathSyntaxError,
    ProtocolError,
    ProtocolErrorKind,
    RemoteProtocolError,
    SpecError,
    SpecErrors,
    TemplateSyntaxError,
    UnsupportedAudio,
    UsageError,
)

if TYPE_CHECKING:
    from engine.core.commands import CloseLeg, Command, Notice, OpenLeg, Reschedule, Send
    from engine.core.session import AITarget, CallRoute, CallSession
    from engine.language.loader import SpecSet, load_specs

__all__ = [
    "AITarget",
    "BufferTooSmall",
    "CallRoute",
    "CallSession",
    "CallbridgeError",
    "CheckFailed",
    "CloseLeg",
    "CodecError",
    "Command",
    "ConditionError",
    "ExpressionError",
    "FieldError",
    "LegClosed",
    "LocalProtocolError",
    "Notice",
    "OpenLeg",
    "PathSyntaxError",
    "ProtocolError",
    "ProtocolErrorKind",
    "RemoteProtocolError",
    "Reschedule",
    "Send",
    "SpecError",
    "SpecErrors",
    "SpecSet",
    "TemplateSyntaxError",
    "UnsupportedAudio",
    "UsageError",
    "__version__",
    "load_specs",
]

#: the exports that load on first access (PEP 562), and the module each comes from
_LAZY = {
    "AITarget": "engine.core.session",
    "CallRoute": "engine.core.session",
    "CallSession": "engine.core.session",
    "CloseLeg": "engine.core.commands",
    "Command": "engine.core.commands",
    "Notice": "engine.core.commands",
    "OpenLeg": "engine.core.commands",
    "Reschedule": "engine.core.commands",
    "Send": "engine.core.commands",
    "SpecSet": "engine.language.loader",
    "load_specs": "engine.language.loader",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> Any:
        home = _LAZY.get(name)
        if home is None:
            raise AttributeError(f"module 'engine' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # once: later lookups never come back here
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
