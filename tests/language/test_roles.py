"""Every protocol state declares its role, and the roles make sense: the compiler rejects a state
without ``role:``, a final state whose role is not ``ended``, a non-final state with the role
``ended``, and a leg with no ``live`` state, each with its location (``file:line:col: $.path``).

Each case is the shipped ``protocol.yaml`` with one edit; the states edited are picked by role
from the shipped protocol (not by name), and the expected line is found in the edited text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import main
from engine.language.loader import load_protocol, load_specs
from engine.language.protocol import CompiledProtocol
from tests.conftest import ROOT

SHIPPED = (ROOT / "specs" / "protocol.yaml").read_text()


def _shipped() -> CompiledProtocol:
    return load_specs(ROOT / "specs").protocol


def _find(lines: list[str], anchors: tuple[str, ...]) -> int:
    """Index of the line equal to the last anchor, each anchor searched after the one before."""
    index = -1
    for anchor in anchors:
        index = next(n for n in range(index + 1, len(lines)) if lines[n] == anchor)
    return index


def _state_role_line(lines: list[str], leg: str, state: str) -> int:
    """Index of the ``role:`` line of ``state`` on ``leg`` (the shipped file's indentation)."""
    at = _find(lines, (f"  {leg}:", "    states:", f"      {state}:"))
    return next(n for n in range(at + 1, len(lines)) if lines[n].startswith("        role:"))


def _col(line: str) -> int:
    return len(line) - len(line.lstrip()) + 1


Case = Callable[[CompiledProtocol], tuple[str, str, int, int]]  # -> (text, message, line, col)


def no_role(p: CompiledProtocol) -> tuple[str, str, int, int]:
    state = p.legs["telephony"].first_state("setup")
    lines = SHIPPED.splitlines()
    del lines[_state_role_line(lines, "telephony", state)]
    at = _find(lines, ("  telephony:", "    states:", f"      {state}:"))
    return "\n".join(lines) + "\n", f"$.legs.telephony.states.{state}: 'role' is required", at + 1, _col(lines[at])


def final_not_ended(p: CompiledProtocol) -> tuple[str, str, int, int]:
    state = sorted(p.legs["telephony"].final)[0]
    lines = SHIPPED.splitlines()
    at = _state_role_line(lines, "telephony", state)
    lines[at] = "        role: ending"
    message = f"$.legs.telephony.states.{state}.role: state {state!r} is final: its role must be 'ended'"
    return "\n".join(lines) + "\n", message, at + 1, _col(lines[at])


def ended_not_final(p: CompiledProtocol) -> tuple[str, str, int, int]:
    state = p.legs["telephony"].first_state("ending")
    lines = SHIPPED.splitlines()
    at = _state_role_line(lines, "telephony", state)
    lines[at] = "        role: ended"
    message = (
        f"$.legs.telephony.states.{state}.role: state {state!r} is not final: only final states have the role 'ended'"
    )
    return "\n".join(lines) + "\n", message, at + 1, _col(lines[at])


def no_live(p: CompiledProtocol) -> tuple[str, str, int, int]:
    lines = SHIPPED.splitlines()
    for state in p.legs["ai"].role_states["live"]:
        lines[_state_role_line(lines, "ai", state)] = "        role: setup"
    at = _find(lines, ("  ai:", "    states:"))
    message = "$.legs.ai.states: no state has the role 'live': the call could never be up on this leg"
    return "\n".join(lines) + "\n", message, at + 1, _col(lines[at])


CASES: dict[str, Case] = {
    "state_without_role": no_role,
    "final_state_not_ended": final_not_ended,
    "ended_state_not_final": ended_not_final,
    "leg_without_live_state": no_live,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_compiler_rejects_a_bad_role_with_its_location(case: str, tmp_path: Path) -> None:
    text, message, line, col = CASES[case](_shipped())
    assert text != SHIPPED
    path = tmp_path / case / "protocol.yaml"
    path.parent.mkdir()
    path.write_text(text)
    compiled, errors = load_protocol(path)
    assert compiled is None
    assert [str(e) for e in errors] == [f"{path}:{line}:{col}: {message}"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_callbridge_check_reports_it(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text, message, line, col = CASES[case](_shipped())
    (tmp_path / case).mkdir()
    (tmp_path / case / "protocol.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    path = f"{case}/protocol.yaml"
    assert main(["check", path]) == 1
    errors = [e for e in capsys.readouterr().err.splitlines() if not e.startswith("callbridge check:")]
    assert errors == [f"{path}:{line}:{col}: {message}"]


def test_the_shipped_protocol_gives_every_state_a_role() -> None:
    protocol = _shipped()
    for leg in protocol.legs.values():
        assert set(leg.roles) == set(leg.states)
        assert leg.role_states["ended"] == leg.final
        assert leg.role_states["live"]
        assert leg.in_role(leg.first_state("live"), "live")
