"""The call core is Sans-I/O: no module of engine/core imports an event loop, a socket, a thread,
a clock or the I/O layer. Time comes in as ``now``; bytes come in and commands go out.

Every import is checked, at any depth (inside functions too) and in every spelling
(``import time``, ``from time import monotonic``, ``from engine import io``, ``from ..io import x``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "engine" / "core"
FORBIDDEN = ("asyncio", "websockets", "socket", "selectors", "ssl", "threading", "time", "engine.io")


def _imported(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """Every module an import statement names, as ``(line, absolute dotted name)``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # ``from engine import io`` imports a module through a name
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _forbidden(module: str) -> str | None:
    return next((f for f in FORBIDDEN if module == f or module.startswith(f + ".")), None)


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [
        f"{path.name}:{line}: imports {module}"
        for line, module in _imported(tree, "engine.core")
        if _forbidden(module) is not None
    ]
    assert not found, "the call core must stay Sans-I/O:\n" + "\n".join(found)


def test_the_check_sees_every_spelling() -> None:
    source = (
        "import time\n"
        "from asyncio import sleep\n"
        "from engine import io\n"
        "def f():\n"
        "    from ..io.bridge import Bridge\n"
        "import timeit\n"  # not time
        "from engine.core import commands\n"
    )
    caught = [m for _, m in _imported(ast.parse(source), "engine.core") if _forbidden(m)]
    assert caught == ["time", "asyncio", "asyncio.sleep", "engine.io", "engine.io.bridge", "engine.io.bridge.Bridge"]


def test_there_is_a_core_to_check() -> None:
    assert {"session.py", "legs.py", "audio.py"} <= {p.name for p in CORE.glob("*.py")}
