"""Load a folder of specs (``protocol.yaml``, ``providers/``, ``ai_providers/``) into one frozen
:class:`SpecSet`, or raise :class:`SpecErrors` with every mistake of every file at once.

Where specs come from, first found wins: an explicit folder; ``$CALLBRIDGE_SPECS``; the
``specs/`` folder of a source checkout; the copy bundled in the installed package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from engine.errors import Location, SpecError, SpecErrors
from engine.language.peer import CompiledPeer, compile_peer
from engine.language.protocol import CompiledProtocol, compile_protocol
from engine.language.validate import schema_errors
from engine.language.yamlload import LoadedDocument, load_file

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class SpecSet:
    """Everything compiled from one spec folder."""

    root: Path
    protocol: CompiledProtocol
    providers: Mapping[str, CompiledPeer]
    ai_providers: Mapping[str, CompiledPeer]


def default_spec_root() -> Path:
    """The spec folder :func:`load_specs` reads when given none (first found wins):
    ``$CALLBRIDGE_SPECS``, the ``specs/`` of a source checkout, the copy bundled in the package."""
    env = os.environ.get("CALLBRIDGE_SPECS")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent
    checkout = package.parent / "specs"
    if (checkout / "protocol.yaml").is_file():
        return checkout
    return package / "_bundled_specs"


def display_name(path: Path) -> str:
    """A path as messages show it: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _spec_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())


def kind_of(path: Path) -> str:
    """``protocol``, ``provider`` or ``ai_provider``, from where the file sits (or its content)."""
    if path.name in ("protocol.yaml", "protocol.yml"):
        return "protocol"
    if path.parent.name == "ai_providers":
        return "ai_provider"
    if path.parent.name == "providers":
        return "provider"
    return ""


def _load(path: Path) -> tuple[LoadedDocument | None, list[SpecError]]:
    try:
        return load_file(path, display_name(path)), []
    except SpecError as exc:
        return None, [exc]


def load_protocol(path: Path) -> tuple[CompiledProtocol | None, list[SpecError]]:
    """Load and compile a ``protocol.yaml``: the protocol, or ``None`` and every mistake found.

    Use :func:`load_specs` for a whole folder; this is for tools that check one file.
    """
    doc, errors = _load(path)
    if doc is None:
        return None, errors
    errors = schema_errors(doc, "protocol")
    if errors:
        return None, errors
    return compile_protocol(doc)


def load_peer(path: Path, kind: str, protocol: CompiledProtocol) -> tuple[CompiledPeer | None, list[SpecError]]:
    """Load one provider (``kind="provider"``) or AI provider (``"ai_provider"``) spec file."""
    doc, errors = _load(path)
    if doc is None:
        return None, errors
    if not isinstance(doc.data, dict):
        return None, [doc.error((), "a spec must be a mapping")]
    errors = schema_errors(doc, kind)
    if errors:
        return None, errors
    if kind == "provider" and doc.data["provider"] != path.stem and path.parent.name == "providers":
        return None, [
            doc.error(
                ("provider",),
                f"provider {doc.data['provider']!r} does not match the file "
                f"name {path.name!r} (the URL uses the name; keep them equal)",
            )
        ]
    leg = "telephony" if kind == "provider" else "ai"
    name = doc.data["provider"] if kind == "provider" else path.stem
    return compile_peer(doc, leg, protocol, name)


def load_specs(root: Path | None = None, extra: Iterable[Path] = ()) -> SpecSet:
    """Compile every spec under ``root``; raises :class:`SpecErrors` listing all mistakes."""
    root = Path(root) if root is not None else default_spec_root()
    protocol_path = root / "protocol.yaml"
    if not protocol_path.is_file():
        raise SpecErrors([SpecError(Location(display_name(protocol_path)), "$", "no protocol.yaml here")])
    protocol, errors = load_protocol(protocol_path)
    if protocol is None:
        raise SpecErrors(errors)
    providers: dict[str, CompiledPeer] = {}
    ai: dict[str, CompiledPeer] = {}
    files = [(p, "provider") for p in _spec_files(root / "providers")]
    files += [(p, "ai_provider") for p in _spec_files(root / "ai_providers")]
    files += [(Path(p), kind_of(Path(p)) or "provider") for p in extra]
    for path, kind in files:
        peer, found = load_peer(path, kind, protocol)
        errors.extend(found)
        if peer is not None:
            target = providers if kind == "provider" else ai
            if peer.name in target:
                errors.append(
                    SpecError(
                        Location(peer.file, 1, 1), "$", f"{peer.name!r} is already defined by {target[peer.name].file}"
                    )
                )
            target[peer.name] = peer
    if errors:
        raise SpecErrors(errors)
    return SpecSet(root, protocol, MappingProxyType(providers), MappingProxyType(ai))


def check_paths(paths: Iterable[Path], root: Path | None = None) -> tuple[list[SpecError], int]:
    """Validate files or folders (for ``callbridge check``); returns the errors and the number
    of files checked. Peer files are checked against the protocol of ``root`` (or their own
    folder's parent when it has one)."""
    errors: list[SpecError] = []
    count = 0
    targets: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            if (path / "protocol.yaml").is_file():
                targets.append(path / "protocol.yaml")
            for sub in ("providers", "ai_providers"):
                targets.extend(_spec_files(path / sub))
            targets.extend(_spec_files(path) if path.name in ("providers", "ai_providers") else [])
        elif path.exists():
            targets.append(path)
        else:
            errors.append(SpecError(Location(str(path)), "$", "no such file or folder"))
    protocols: dict[Path, CompiledProtocol | None] = {}

    def protocol_for(spec: Path) -> CompiledProtocol | None:
        candidate = spec.parent.parent / "protocol.yaml"
        base = candidate if candidate.is_file() else (root or default_spec_root()) / "protocol.yaml"
        if base not in protocols:
            protocols[base], found = load_protocol(base)
            errors.extend(e for e in found if e not in errors)
        return protocols[base]

    for target in targets:
        count += 1
        kind = kind_of(target)
        if kind == "protocol":
            compiled, found = load_protocol(target)
            protocols[target] = compiled
            errors.extend(found)
            continue
        protocol = protocol_for(target)
        if protocol is None:
            continue
        if not kind:
            doc, found = _load(target)
            if doc is None:
                errors.extend(found)
                continue
            kind = "ai_provider" if isinstance(doc.data, dict) and "websocket" in doc.data else "provider"
        _, found = load_peer(target, kind, protocol)
        errors.extend(found)
    unique = {str(e): e for e in errors}
    return list(unique.values()), count
