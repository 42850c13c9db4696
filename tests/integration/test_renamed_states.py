"""The engine never names a protocol state: rename every state of both legs and nothing changes.

A copy of ``specs/`` whose ``protocol.yaml`` has every state of both legs renamed (state keys,
``to:``, ``initial``, ``final``, the bridge rules' ``when.enters``, the timers' ``states``),
rewritten structurally (load, rename, dump), with the same roles. On that copy:

* ``callbridge check`` passes;
* ``callbridge conformance`` passes for every platform and AI provider spec;
* whole calls through a real ``callbridge serve`` process (embedded echo AI) complete, for
  Twilio (JSON, base64 audio) and Vonage (binary audio), and the caller's audio comes back as
  the same signal.

A failure here means something (the engine's core, the bridge, the tools) still knows a state
by its name rather than asking the leg's role or the compiled protocol.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from engine.cli import main
from engine.conformance import FAIL, PASS
from engine.dsp.resample import Resampler
from engine.io.wav import best_correlation, read_wav, speechlike, write_wav
from engine.language.loader import SPEC_SUFFIXES, load_specs
from tests.conftest import ROOT
from tests.integration.helpers import ServeProcess

#: every shipped state, renamed; a state added to protocol.yaml later gets ``<leg>_state_<n>``
NEW_NAMES: dict[str, dict[str, str]] = {
    "telephony": {
        "awaiting_handshake": "t_hello",
        "connected": "t_greeted",
        "streaming": "t_talking",
        "stopped": "t_hanging_up",
        "closed": "t_gone",
    },
    "ai": {
        "idle": "a_parked",
        "connecting": "a_dialling",
        "active": "a_on",
        "closing": "a_leaving",
        "closed": "a_gone",
    },
}

SPECS = sorted(
    p.relative_to(ROOT / "specs")
    for kind in ("providers", "ai_providers")
    for p in (ROOT / "specs" / kind).iterdir()
    if p.suffix in SPEC_SUFFIXES
)
#: the adapter guide's mandatory checklist lines (telephony) and the AI suite's own
MANDATORY = {
    "telephony": ("handshake/connected", "meta/start", "audio/media caller->AI", "audio/media AI->caller",
                  "control/clear", "lifecycle/order", "lifecycle/malformed", "lifecycle/unknown"),
    "ai": ("ai/start", "audio/media caller->AI", "audio/media AI->caller", "lifecycle/malformed",
           "lifecycle/unknown"),
}
#: what a failure on the serve path most likely means
STATE_NAMED = (
    "a whole call through `callbridge serve` failed with every protocol state renamed: something "
    "on the serve path (engine/core, engine/io/bridge.py, engine/io/server.py) probably still names "
    "a protocol state instead of asking the leg's role"
)


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments and flow style survive
    yaml.width = 4096
    return yaml


def _rename_in_place(seq: Any, names: dict[str, str]) -> None:
    for index, state in enumerate(seq):
        seq[index] = names[state]


def rename_states(data: Any) -> dict[str, dict[str, str]]:
    """Rename every state of both legs of a loaded protocol.yaml, wherever one is referenced;
    returns leg -> old name -> new name."""
    mapping: dict[str, dict[str, str]] = {}
    for leg_name, leg in data["legs"].items():
        explicit = NEW_NAMES.get(leg_name, {})
        names = {s: explicit.get(s, f"{leg_name}_state_{i}") for i, s in enumerate(leg["states"])}
        mapping[leg_name] = names
        leg["initial"] = names[leg["initial"]]
        _rename_in_place(leg["final"], names)
        renamed = CommentedMap()
        for state, body in leg["states"].items():
            for transition in (body.get("transitions") or {}).values():
                if isinstance(transition, dict) and "to" in transition:
                    transition["to"] = names[transition["to"]]
            renamed[names[state]] = body
        leg["states"] = renamed
    for rule in data.get("bridge") or []:
        when = rule["when"]
        names = mapping[when["leg"]]
        if isinstance(when["enters"], str):
            when["enters"] = names[when["enters"]]
        else:
            _rename_in_place(when["enters"], names)
    for timer in (data.get("timers") or {}).values():
        _rename_in_place(timer["states"], mapping[timer["leg"]])
    return mapping


def state_references(data: Any) -> dict[str, list[str]]:
    """Every place a protocol.yaml names a state, per leg (keys, initial, final, to, enters, timers)."""
    found: dict[str, list[str]] = {leg: [] for leg in data["legs"]}
    for leg_name, leg in data["legs"].items():
        refs = found[leg_name]
        refs += [leg["initial"], *leg["final"], *leg["states"]]
        for body in leg["states"].values():
            refs += [t["to"] for t in (body.get("transitions") or {}).values() if isinstance(t, dict) and "to" in t]
    for rule in data.get("bridge") or []:
        enters = rule["when"]["enters"]
        found[rule["when"]["leg"]] += [enters] if isinstance(enters, str) else list(enters)
    for timer in (data.get("timers") or {}).values():
        found[timer["leg"]] += list(timer["states"])
    return found


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of specs/ whose protocol.yaml has every state of both legs renamed."""
    root = tmp_path_factory.mktemp("renamed") / "specs"
    shutil.copytree(ROOT / "specs", root)
    yaml = _yaml()
    path = root / "protocol.yaml"
    data = yaml.load(path.read_text())
    rename_states(data)
    with path.open("w") as out:
        yaml.dump(data, out)
    return root


def test_the_copy_names_no_old_state(renamed: Path) -> None:
    original = YAML(typ="safe").load((ROOT / "specs" / "protocol.yaml").read_text())
    copy = YAML(typ="safe").load((renamed / "protocol.yaml").read_text())
    old = state_references(original)
    new = state_references(copy)
    every_old = {s for refs in old.values() for s in refs}
    for leg, refs in new.items():
        assert refs, leg
        assert not set(refs) & every_old, f"{leg} leg still names {sorted(set(refs) & every_old)}"
        # as many references as before, each to the state it was renamed to
        expected = [NEW_NAMES[leg].get(s) or s for s in old[leg]]
        assert len(refs) == len(old[leg])
        if set(old[leg]) <= set(NEW_NAMES[leg]):
            assert refs == expected
    # both legs' final states got names of their own
    assert not set(copy["legs"]["telephony"]["states"]) & set(copy["legs"]["ai"]["states"])
    # it compiles, and every renamed state kept its role
    shipped, specs = load_specs(ROOT / "specs"), load_specs(renamed)
    for leg_name, compiled in specs.protocol.legs.items():
        before = shipped.protocol.legs[leg_name]
        names = dict(zip(before.states, compiled.states, strict=True))
        assert {names[s]: r for s, r in before.roles.items()} == dict(compiled.roles)
        assert compiled.initial == names[before.initial]
        assert compiled.final == frozenset(names[s] for s in before.final)
        assert compiled.media_states == frozenset(names[s] for s in before.media_states)
        assert not set(compiled.states) & every_old


def test_check_passes_on_the_renamed_specs(renamed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--specs", str(renamed), "check"]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_conformance_passes_on_the_renamed_specs(
    renamed: Path, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--specs", str(renamed), "conformance", str(renamed / spec)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith(FAIL)], out
    assert lines[-1].split(", ")[1] == "0 failed", out
    kind = "telephony" if spec.parts[0] == "providers" else "ai"
    passed = {line[6:].split("  ")[0].rstrip() for line in lines if line.startswith(PASS + " ")}
    for name in MANDATORY[kind]:
        assert name in passed, f"{name} did not pass:\n{out}"


# ------------------------------------------------------------------------- callbridge serve



@pytest.fixture(scope="module")
def server(renamed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, int]]:
    config = tmp_path_factory.mktemp("serve") / "callbridge.yaml"
    # no routes: every call goes to the embedded echo AI
    config.write_text("listen: {host: 127.0.0.1, port: 0}\nlimits: {drain_timeout_ms: 3000}\n")
    serve = ServeProcess(config, renamed, hint=STATE_NAMED)
    try:
        listening = serve.wait_for("server.listening")
        assert Path(str(listening["specs"])).resolve() == renamed.resolve(), listening
        yield serve, int(listening["port"])
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=20) == 0
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait()


@pytest.mark.parametrize("provider", ["twilio", "vonage"])  # JSON with base64 audio; binary audio
def test_whole_call_through_serve_with_renamed_states(
    renamed: Path, server: tuple[ServeProcess, int], provider: str, tmp_path: Path
) -> None:
    serve, port = server
    said = speechlike(16000, 1.5)
    write_wav(tmp_path / "in.wav", said, 16000)
    url = f"ws://127.0.0.1:{port}/ws-adapter/{provider}/inbound/1/1/+14155550100?caller_id=+14155550123"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "--specs", str(renamed), "call", "--provider", provider,
         "--audio", str(tmp_path / "in.wav"), "--out", str(tmp_path / "out.wav"), "--dtmf", "5", "--tail", "0.6",
         url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    ended = serve.wait_for("call.ended")
    context = f"{STATE_NAMED}\ncall: {done.stdout}{done.stderr}\nserver: {serve.problems()}\ncall.ended: {ended}"
    assert done.returncode == 0 and "Traceback" not in done.stderr, context
    assert ended.get("outcome") == "completed", context
    heard, rate = read_wav(tmp_path / "out.wav")
    assert len(heard) > rate // 2, f"{context}\nonly {len(heard)} samples came back"
    reference = said if rate == 16000 else Resampler(16000, rate).process(said)
    corr, _ = best_correlation(reference, heard, rate // 2)
    assert corr >= 0.9, f"{context}\nthe echo came back distorted (correlation {corr:.3f})"
