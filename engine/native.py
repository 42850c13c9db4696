"""Compiled builds of the per-frame modules, and the guard that keeps them honest.

Every audio frame of every call runs through a handful of pure-Python modules (the call core,
the playout clock, the spec's decoder and templates, the transcoder's wrapper, the bridge).
``make native`` (part of ``make test`` and ``make serve``) compiles exactly those with mypyc,
in place: a ``.so`` next to each ``.py``, which Python imports in preference to the source.
On a loaded server that is ~30% less CPU per call and a later latency knee (docs/perf).

The compiled modules are an accelerator, never a second implementation: the same source,
type-checked, and everything works without them. This module decides, once, before any of
them is imported (``engine/__init__`` calls :func:`guard`), whether the compiled ones may be
used: not when ``CALLBRIDGE_PURE=1``, and not when any of the sources changed since the build
(then the source is what you edited, and running stale machine code would lie to you). In
either case all of them load from source, together: compiled modules call each other
directly, so a mix is not allowed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: the per-frame modules mypyc compiles (engine/io/direct.py is not among them: its classes
#: extend websockets' with several bases, which mypyc does not support; its per-message work
#: is in engine/io/wire.py, which is)
MODULES: tuple[str, ...] = (
    "engine.core.audio",
    "engine.core.commands",
    "engine.core.control",
    "engine.core.legs",
    "engine.core.pipeline",
    "engine.core.playout",
    "engine.core.session",
    "engine.dsp.formats",
    "engine.dsp.framer",
    "engine.dsp.transcoder",
    "engine.io.bridge",
    "engine.io.wire",
    "engine.language.decode",
    "engine.language.extract",
    "engine.language.peer",
    "engine.language.templates",
)
#: mypyc's shared runtime library for the group (engine/_native__mypyc.*.so)
GROUP = "engine._native"
PURE_ENV = "CALLBRIDGE_PURE"
PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
#: what the last build compiled: module -> sha256 of its source
STAMP_FILE = PACKAGE_DIR / "_native.json"

_status = "pure Python (not decided yet)"


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def compiled_files(module: str) -> list[Path]:
    """The extension modules built for ``module`` (any Python version's)."""
    path = source_path(module)
    return sorted(path.parent.glob(path.stem + ".*.so"))


def _decide() -> tuple[bool, str]:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return False, f"pure Python ({PURE_ENV} is set)"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    built = [m for m in MODULES if source_path(m).with_suffix(suffix).exists()]
    if not built:
        return False, "pure Python (not compiled: run `make native`)"
    try:
        stamp = json.loads(STAMP_FILE.read_text())
    except (OSError, ValueError):
        return False, f"pure Python ({STAMP_FILE.name} missing or unreadable: run `make native`)"
    missing = [m for m in MODULES if m not in built]
    if missing:
        return False, f"pure Python (not compiled for this Python: {missing[0]}: run `make native`)"
    changed = [m for m in MODULES if stamp.get(m) != digest(m)]
    if changed:
        where = source_path(changed[0]).relative_to(ROOT)
        return False, f"pure Python ({where} changed since it was compiled: run `make native`)"
    return True, f"compiled (mypyc, {len(MODULES)} per-frame modules)"


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' sources, never their ``.so``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        source = source_path(fullname)
        return importlib.util.spec_from_file_location(
            fullname, source, loader=importlib.machinery.SourceFileLoader(fullname, str(source))
        )


def guard() -> None:
    """Decide once whether the compiled modules load (before any of them is imported)."""
    global _status
    use_compiled, _status = _decide()
    if not use_compiled and not any(isinstance(f, _FromSource) for f in sys.meta_path):
        sys.meta_path.insert(0, _FromSource())


def status() -> str:
    """How the per-frame modules run in this process, e.g. for the server's start-up log."""
    return _status


def active() -> bool:
    """Whether the per-frame modules of this process are the compiled ones."""
    return all(
        (module := sys.modules.get(name)) is None or str(getattr(module, "__file__", "")).endswith(".so")
        for name in MODULES
    ) and _status.startswith("compiled")
