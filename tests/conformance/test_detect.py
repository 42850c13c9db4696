"""Provider auto-detection from the first message(s), by the specs' own patterns and
fingerprints, on every recorded vector; truly ambiguous Twilio-compatible openings are refused."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine.errors import ProtocolErrorKind, RemoteProtocolError
from engine.language.detect import candidates, detect_provider
from engine.language.loader import SpecSet
from engine.replay import read_transcript
from tests.conftest import VECTORS

VECTOR_FILES = sorted(VECTORS.glob("*/*.jsonl"))


def first_frames(path: Path, n: int = 2) -> list[str | bytes]:
    entries = [e for e in read_transcript(path) if e.leg == "telephony" and e.kind in ("frame", "binary")]
    return [e.data for e in entries[:n]]


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[f"{p.parent.name}-{p.stem}" for p in VECTOR_FILES])
def test_every_vector_is_recognised_from_its_first_two_messages(specs: SpecSet, path: Path) -> None:
    assert detect_provider(specs, first_frames(path)) == path.parent.name


@pytest.mark.parametrize(
    "provider", ["twilio", "signalwire", "telnyx", "plivo", "vonage", "jambonz", "asterisk", "genesys", "generic"]
)
def test_one_message_is_enough_where_it_says_who_it_is(specs: SpecSet, provider: str) -> None:
    assert detect_provider(specs, first_frames(VECTORS / provider / "call.jsonl", 1)) == provider


def test_a_bare_connected_is_ambiguous_until_the_start(specs: SpecSet) -> None:
    # Smartflo and Exotel both open with {"event": "connected"}: one message cannot tell them apart.
    with pytest.raises(
        RemoteProtocolError, match="cannot tell the platform: the first 1 message match exotel and smartflo equally"
    ) as info:
        detect_provider(specs, first_frames(VECTORS / "smartflo" / "call.jsonl", 1))
    assert info.value.kind is ProtocolErrorKind.AMBIGUOUS
    assert detect_provider(specs, first_frames(VECTORS / "smartflo" / "call.jsonl", 2)) == "smartflo"


def test_truly_ambiguous_twilio_compatible_opening_is_refused(specs: SpecSet) -> None:
    # Twilio's shapes with none of the evidence that separates Twilio, SignalWire and Smartflo.
    connected = orjson.dumps({"event": "connected", "protocol": "Call", "version": "0.2.0"}).decode()
    start = orjson.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ1",
            "start": {
                "streamSid": "MZ1",
                "callSid": "CA1",
                "accountSid": "AC1",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
    ).decode()
    expected = (
        r"match twilio, signalwire, exotel and smartflo but each contradicts part of its fingerprint "
        r"\(fingerprint evidence: twilio \+3/-2, signalwire \+1/-1"
    )
    with pytest.raises(RemoteProtocolError, match=expected) as info:
        detect_provider(specs, [connected, start])
    assert info.value.kind is ProtocolErrorKind.AMBIGUOUS and "name the platform in the URL" in str(info.value)
    assert {c.name for c in candidates(specs, [connected, start])} >= {"twilio", "signalwire"}


def test_nothing_matches(specs: SpecSet) -> None:
    with pytest.raises(RemoteProtocolError, match="no platform spec recognises the first 1 message") as info:
        detect_provider(specs, ['{"hello": "world"}'])
    assert info.value.kind is ProtocolErrorKind.UNKNOWN
    with pytest.raises(RemoteProtocolError, match="no message yet"):
        detect_provider(specs, [])
    # audio first is not an opening, even for platforms whose audio is binary
    with pytest.raises(RemoteProtocolError, match="no platform spec recognises"):
        detect_provider(specs, [b"\x00\x01" * 160])


def test_messages_synthesised_from_each_spec_are_detected_as_it(specs: SpecSet) -> None:
    # callbridge's own simulator speaks a platform from its spec alone; those openings must be
    # told apart too (build_incoming writes each pattern's fingerprint as evidence)
    from engine.language.synth import build_incoming

    values = {
        "stream_id": "S1",
        "call_id": "C1",
        "from": "+14155550123",
        "to": "+14155550100",
        "sequence": 1,
        "protocol": "Call",
        "version": "1.0.0",
        "sample_rate": 8000,
    }
    for name, peer in specs.providers.items():
        combined = any("connected" in p.emits and "start" in p.emits for p in peer.patterns)
        frames = [build_incoming(peer, "connected", values)]
        if not combined:
            frames.append(build_incoming(peer, "start", values))
        assert detect_provider(specs, frames) == name
