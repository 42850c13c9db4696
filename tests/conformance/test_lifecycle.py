"""The conformance kit's lifecycle suite over every shipped spec, telephony and AI.

A new spec file dropped into ``specs/providers/`` or ``specs/ai_providers/`` is picked up here
with no test code: the same suite ``callbridge conformance SPEC`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.conformance import FAIL, PASS, run_conformance
from engine.language.loader import SPEC_SUFFIXES, SpecSet
from tests.conftest import ROOT

SPECS = sorted(
    p.relative_to(ROOT)
    for kind in ("providers", "ai_providers")
    for p in (ROOT / "specs" / kind).iterdir()
    if p.suffix in SPEC_SUFFIXES
)
#: the adapter guide's mandatory checklist, in its own category names
MANDATORY = ("handshake/connected", "meta/start", "audio/media caller->AI", "audio/media AI->caller", "control/clear")


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_passes_the_lifecycle_suite(specs: SpecSet, path: Path) -> None:
    report = run_conformance(ROOT / path, specs)
    assert report.ok, report.text()
    names = [line.name for line in report.lines]
    if report.kind == "telephony":
        for name in MANDATORY:
            assert report.line(name).status == PASS, report.text()
        assert "lifecycle/order" in names and report.line("lifecycle/order").status == PASS
    else:
        for name in ("ai/start", "audio/media caller->AI", "audio/media AI->caller"):
            assert report.line(name).status == PASS, report.text()
    assert report.line("lifecycle/malformed").status == PASS
    assert report.line("lifecycle/unknown").status == PASS


def test_every_shipped_platform_is_covered() -> None:
    names = {p.stem for p in SPECS if p.parent.name == "providers"}
    assert {
        "twilio",
        "signalwire",
        "exotel",
        "plivo",
        "telnyx",
        "vonage",
        "jambonz",
        "asterisk",
        "smartflo",
        "genesys",
        "generic",
    } <= names
    ai = {p.stem for p in SPECS if p.parent.name == "ai_providers"}
    assert {"default", "echo", "openai-realtime", "deepgram-agent"} <= ai


def test_a_deliberate_mistake_fails_with_its_location(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = "tests/conformance/broken/providers/forgot_stream_id.yaml"
    assert main(["check", path]) == 0  # the compiler cannot see this one
    capsys.readouterr()
    assert main(["conformance", path]) == 1
    out = capsys.readouterr().out.splitlines()
    failed = [line for line in out if line.startswith(FAIL)]
    assert failed, out
    assert any(
        "audio/media AI->caller" in line
        and f"{path}:" in line
        and "$.events.outgoing.media.streamSid: " in line
        and "needs ${stream_id}, which this call does not have" in line
        for line in failed
    ), failed
    # the lines the mistake does not touch still pass
    assert any(line.startswith(PASS) and "meta/start" in line for line in out)
    assert out[-1].endswith("0 skipped") and " failed" in out[-1]


def test_a_spec_that_does_not_load_fails_its_first_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = "tests/language/broken/providers/unknown_key.yaml"
    assert main(["conformance", path]) == 1
    out = capsys.readouterr().out
    assert "FAIL  spec/load" in out
    assert f"{path}:5:3: $.audio.samplerate: unknown key 'samplerate'; did you mean 'sample_rate'?" in out


def test_the_command_passes_a_good_spec(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["conformance", "specs/providers/vonage.yaml", "specs/ai_providers/openai-realtime.yaml"]) == 0
    out = capsys.readouterr().out
    assert "PASS  control/clear" in out and "truncate" in out
    assert "FAIL" not in out
