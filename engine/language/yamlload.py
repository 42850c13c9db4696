"""Read a YAML (or JSON) file into plain Python data plus the line and column of every node.

ruamel.yaml's round-trip loader keeps positions on its container types; we turn them into a
flat map from JSON path (a tuple of keys and list indices) to ``(line, col)``, 1-based, and
return plain ``dict``/``list`` data so that nothing downstream depends on ruamel's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from engine.errors import Location, SpecError

JsonPath = tuple[str | int, ...]


def format_path(path: JsonPath) -> str:
    """``("events", "incoming", 0, "x")`` -> ``$.events.incoming[0].x``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


@dataclass(frozen=True)
class LoadedDocument:
    """A loaded file: its data, where it came from, and where each node sits in it."""

    file: str
    data: Any
    positions: dict[JsonPath, tuple[int, int]]

    def location(self, path: JsonPath) -> Location:
        """The position of ``path``, or of its nearest ancestor that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                line, col = self.positions[probe]
                return Location(self.file, line, col)
            probe = probe[:-1]
        line, col = self.positions.get((), (1, 1))
        return Location(self.file, line, col)

    def error(self, path: JsonPath, message: str) -> SpecError:
        """A :exc:`SpecError` for ``path`` in this file, located at its line and column: collect
        it (compilers report every mistake at once) or raise it."""
        return SpecError(self.location(path), format_path(path), message)


def _plain(node: Any, path: JsonPath, positions: dict[JsonPath, tuple[int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, key if isinstance(key, str | int) else str(key))
            try:
                line, col = node.lc.key(key)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[key] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            try:
                line, col = node.lc.item(index)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            items.append(_plain(value, child, positions))
        return items
    if isinstance(node, str):
        return str(node)  # drop ruamel's scalar string subclasses
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def load_text(text: str, file: str) -> LoadedDocument:
    """Parse ``text`` (named ``file`` in messages). Raises :class:`SpecError` on bad syntax."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(Location(file, line, col), "$", f"YAML syntax: {problem}") from None
    except YAMLError as exc:
        raise SpecError(Location(file, 1, 1), "$", f"YAML syntax: {exc}") from None
    positions: dict[JsonPath, tuple[int, int]] = {(): (1, 1)}
    data = _plain(raw, (), positions)
    return LoadedDocument(file, data, positions)


def load_file(path: str | Path, display: str | None = None) -> LoadedDocument:
    """Read and parse a file; ``display`` is the name used in messages (default: the path)."""
    name = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(Location(name), "$", f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(Location(name), "$", f"not UTF-8 text: {exc.reason}") from None
    return load_text(text, name)
