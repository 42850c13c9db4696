"""The spec read backwards must agree with the spec read forwards, for every shipped spec:
a message built for an event decodes to that event and those values, and a message rendered
from a template is recognised as that template with those values."""

from __future__ import annotations

import pytest

from engine.language.loader import SpecSet
from engine.language.synth import build_incoming, read_outgoing
from tests.conftest import ROOT

SAMPLE = {
    "audio": b"\x01\x02" * 80,
    "digit": "7",
    "duration": 120,
    "mark": "cb3",
    "stream_id": "S1",
    "call_id": "C1",
    "account_id": "A1",
    "from": "+14155550123",
    "to": "+14155550100",
    "reason": "NORMAL_CLEARING",
}


def _spec_names(kind: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "specs" / kind).glob("*.yaml"))


def _values_for(pattern_fields: set[str]) -> dict:
    return {k: v for k, v in SAMPLE.items() if k in pattern_fields}


@pytest.mark.parametrize(
    "kind,name",
    [("providers", n) for n in _spec_names("providers")] + [("ai_providers", n) for n in _spec_names("ai_providers")],
)
def test_round_trip(specs: SpecSet, kind: str, name: str) -> None:
    peer = (specs.providers if kind == "providers" else specs.ai_providers)[name]
    for event in sorted(peer.mapped_events):
        pattern = next(p for p in peer.patterns if event in p.emits and not p.ignore)
        values = _values_for({r.field for r in pattern.rules if r.paths and not r.paths[0].startswith("$")})
        frame = build_incoming(peer, event, values)
        decoded = peer.decode(frame, {"query": {}, "path": {}, "header": {}})
        assert decoded is not None and event in decoded.events
        for key, value in values.items():
            assert decoded.fields.get(key) == value, (event, key)
    context = {
        "stream_id": "S1",
        "bridge_call_id": "B1",
        "platform_call_id": "C1",
        "caller_number": "+1",
        "callee_number": "+2",
        "account_id": "A1",
        "ai_encoding": "pcm16",
        "ai_sample_rate": 24000,
        "seq": 1,
        "media_seq": 1,
        "media_timestamp": 0,
        "played_ms": 0,
        "call_id": "C1",
        "out_encoding": "MULAW",
        "out_sample_rate": 8000,
    }
    # Variables a platform's own messages provide (start's encoding, Genesys' clientseq, ...).
    context |= {"encoding": "audio/x-mulaw", "sample_rate": 8000, "x_clientseq": 3, "x_item_id": "item_1",
                "item_played_ms": 120}
    for template_name, template in peer.templates.items():
        rendered = template.render(SAMPLE, context)
        found = read_outgoing(peer, rendered if template.binary else rendered.decode())
        assert found is not None
        assert found[0] == template_name or peer.templates[found[0]].render(SAMPLE, context) == rendered
