"""Draw ``protocol.yaml`` as Mermaid state diagrams (and SVG through Graphviz when present)."""

from __future__ import annotations

import shutil
import subprocess

from engine.language.protocol import CompiledLeg, CompiledProtocol, Policy, Transition


def _label(tr: Transition) -> str:
    parts = [tr.event]
    if tr.guard:
        parts.append(f"[{tr.guard}]")
    if tr.actions:
        parts.append("/ " + ", ".join(tr.actions))
    return " ".join(parts)


def _leg_mermaid(leg: CompiledLeg, indent: str) -> list[str]:
    lines = [f"{indent}[*] --> {leg.initial}"]
    for state in leg.states:
        enter = leg.on_enter.get(state)
        if enter:
            lines.append(f"{indent}{state} : entry / {', '.join(enter)}")
        internal = [
            tr for (s, _), tr in leg.table.items() if s == state and isinstance(tr, Transition) and tr.dest is None
        ]
        for tr in internal:
            lines.append(f"{indent}{state} : {_label(tr)}")
    for (state, _event), entry in leg.table.items():
        if isinstance(entry, Transition) and entry.dest is not None:
            lines.append(f"{indent}{state} --> {entry.dest} : {_label(entry)}")
    for state in sorted(leg.final):
        lines.append(f"{indent}{state} --> [*]")
    return lines


def mermaid(protocol: CompiledProtocol) -> str:
    """Both legs as one Mermaid ``stateDiagram-v2`` with a composite state per leg."""
    lines = ["stateDiagram-v2", "    direction LR"]
    for name, leg in protocol.legs.items():
        lines.append(f'    state "{name} leg" as {name}_leg {{')
        lines.extend(line.replace("[*]", "[*]") for line in _leg_mermaid(leg, "        "))
        lines.append("    }")
    for rule in protocol.bridge:
        lines.append(
            f"    note right of {rule.leg}_leg : on entering {'/'.join(rule.enters)} do {', '.join(rule.actions)}"
        )
    return "\n".join(lines) + "\n"


def policy_table(leg: CompiledLeg) -> str:
    """Markdown table: every state x event of a leg with its transition or policy."""
    header = "| state | " + " | ".join(leg.events) + " |"
    rule = "|---" * (len(leg.events) + 1) + "|"
    rows = [header, rule]
    for state in leg.states:
        cells = []
        for event in leg.events:
            entry = leg.table[(state, event)]
            if isinstance(entry, Policy):
                cells.append(str(entry))
            else:
                cells.append(f"→ {entry.dest}" if entry.dest else "✓")
        rows.append(f"| {state} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def dot(protocol: CompiledProtocol) -> str:
    lines = ["digraph protocol {", "  rankdir=LR; node [shape=box, style=rounded, fontname=Helvetica];"]
    for name, leg in protocol.legs.items():
        lines.append(f'  subgraph cluster_{name} {{ label="{name} leg";')
        for state in leg.states:
            shape = "doublecircle" if state in leg.final else "box"
            lines.append(f'    {name}_{state} [label="{state}", shape={shape}];')
        for (state, _event), tr in leg.table.items():
            if isinstance(tr, Transition) and tr.dest is not None:
                lines.append(f'    {name}_{state} -> {name}_{tr.dest} [label="{_label(tr)}"];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(protocol: CompiledProtocol) -> str | None:
    """SVG through Graphviz's ``dot``, or ``None`` when Graphviz is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    result = subprocess.run([exe, "-Tsvg"], input=dot(protocol), capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None
