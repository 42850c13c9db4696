"""The caller's identity as twilio, signalwire, smartflo, exotel, plivo and telnyx really send it:
each platform's opening message, shaped as its own documentation shows it, gives canonical
``from``, ``to``, ``call_id`` and ``custom``; and each spec declares how the platform proves
itself on the upgrade (``auth:``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.language.loader import SpecSet


def env(query: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    return {"query": query or {}, "path": {}, "header": {}}


def opening(specs: SpecSet, provider: str, message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    decoded = specs.providers[provider].decode(orjson.dumps(message).decode(), env(**kw))
    assert decoded is not None and "start" in decoded.events
    return dict(decoded.fields)


def twilio_start(custom: dict[str, str]) -> dict[str, Any]:
    return {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC00000000000000000000000000000000",
            "streamSid": "MZ00000000000000000000000000000000",
            "callSid": "CA00000000000000000000000000000000",
            "tracks": ["inbound"],
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": "MZ00000000000000000000000000000000",
    }


def test_twilio_reads_the_callbridge_parameters(specs: SpecSet) -> None:
    # <Parameter name="caller_id" value="{{From}}"/> <Parameter name="callee_id" value="{{To}}"/>
    fields = opening(specs, "twilio", twilio_start({"caller_id": "+14155550123", "callee_id": "+14155550100"}))
    assert (fields["from"], fields["to"]) == ("+14155550123", "+14155550100")
    assert fields["call_id"] == "CA00000000000000000000000000000000"
    assert fields["custom"] == {"caller_id": "+14155550123", "callee_id": "+14155550100"}


@pytest.mark.parametrize(("caller", "callee"), [("From", "To"), ("from", "to")])
def test_twilio_reads_twilio_style_parameter_names_too(specs: SpecSet, caller: str, callee: str) -> None:
    fields = opening(specs, "twilio", twilio_start({caller: "+14155550123", callee: "+14155550100"}))
    assert (fields["from"], fields["to"]) == ("+14155550123", "+14155550100")


def test_twilio_start_without_parameters_has_no_numbers(specs: SpecSet) -> None:
    # the documented start: customParameters FirstName/LastName/RemoteParty, no numbers anywhere
    fields = opening(specs, "twilio", twilio_start({"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}))
    assert "from" not in fields and "to" not in fields
    assert fields["custom"]["RemoteParty"] == "Bob"


def test_signalwire_reads_the_callbridge_parameters(specs: SpecSet) -> None:
    # stream.mdx's start (no top-level streamSid), with the cXML's <Parameter> nouns
    message = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "streamSid": "7d56cc11-536d-4a45-b4fb-ed3d55be843b",
            "accountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5",
            "callSid": "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad",
            "tracks": ["inbound"],
            "customParameters": {"caller_id": "+15551230001", "callee_id": "+15551230002"},
            "mediaFormat": {"encoding": "audio/x-L16", "sampleRate": 24000, "channels": 1},
        },
    }
    fields = opening(specs, "signalwire", message)
    assert (fields["from"], fields["to"]) == ("+15551230001", "+15551230002")
    assert fields["call_id"] == "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad"


def test_smartflo_reads_start_from_and_to(specs: SpecSet) -> None:
    # the integration document's start example
    message = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC0",
            "streamSid": "MZ0",
            "callSid": "CA0",
            "from": "9876543210",
            "to": "8047491899",
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "bitRate": 64, "bitDepth": 8},
            "customParameters": {"FirstName": "Jane"},
        },
        "streamSid": "MZ0",
    }
    fields = opening(specs, "smartflo", message)
    assert (fields["from"], fields["to"], fields["call_id"]) == ("9876543210", "8047491899", "CA0")
    assert fields["custom"] == {"FirstName": "Jane"}


def test_exotel_reads_start_from_to_and_custom_parameters(specs: SpecSet) -> None:
    # developer.exotel.com websocket-protocol start; ?sample-rate= from the applet URL
    message = {
        "event": "start",
        "sequence_number": "1",
        "stream_sid": "MZ1",
        "start": {
            "stream_sid": "MZ1",
            "call_sid": "CA1",
            "account_sid": "AC1",
            "from": "+919876543210",
            "to": "+918047491899",
            "custom_parameters": {"key1": "value1"},
            "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
        },
    }
    fields = opening(specs, "exotel", message, query={"sample-rate": "16000", "key1": "value1"})
    assert (fields["from"], fields["to"], fields["call_id"]) == ("+919876543210", "+918047491899", "CA1")
    assert fields["custom"] == {"key1": "value1"}
    assert fields["sample_rate"] == 16000


def test_plivo_has_no_numbers_and_decodes_extra_headers(specs: SpecSet) -> None:
    # the audio streaming reference's start: numbers reach the answer URL, not the stream
    message = {
        "event": "start",
        "sequenceNumber": 1,
        "start": {
            "callId": "12345678-1234-1234-1234-123456789abc",
            "streamId": "87654321-4321-4321-4321-cba987654321",
            "accountId": "MAXXXXXXXXXXXXXXXXXX",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        },
        "extra_headers": "userId=12345;sessionId=abc-xyz",
    }
    fields = opening(specs, "plivo", message)
    assert "from" not in fields and "to" not in fields
    assert fields["call_id"] == "12345678-1234-1234-1234-123456789abc"
    assert fields["custom"] == {"userId": "12345", "sessionId": "abc-xyz"}
    # the <Stream extraHeaders="..."> attribute's own comma form decodes the same way
    message["extra_headers"] = "test1=12,test2=123"
    assert opening(specs, "plivo", message)["custom"] == {"test1": "12", "test2": "123"}


def test_telnyx_reads_start_from_to_and_custom_parameters(specs: SpecSet) -> None:
    # the AsyncAPI page's start example
    message = {
        "event": "start",
        "sequence_number": "1",
        "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
        "start": {
            "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
            "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
            "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
            "from": "+13122010094",
            "to": "+13122123456",
            "tags": ["TAG1", "TAG2"],
            "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
            "custom_parameters": {"customer_id": "customer_123"},
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        },
    }
    fields = opening(specs, "telnyx", message)
    assert (fields["from"], fields["to"]) == ("+13122010094", "+13122123456")
    assert fields["call_id"] == "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
    assert fields["custom"] == {"customer_id": "customer_123"}


@pytest.mark.parametrize(
    ("provider", "declared"),
    [
        ("twilio", [("twilio_signature", "X-Twilio-Signature", "")]),
        ("signalwire", [("token", "Authorization", "Bearer"), ("twilio_signature", "X-SignalWire-Signature", "")]),
        ("smartflo", []),
        ("exotel", [("basic", "Authorization", "")]),
        ("plivo", []),
        ("telnyx", [("token", "X-Telnyx-Streaming-Auth-Token", "")]),
    ],
)
def test_each_spec_declares_its_upgrade_auth(
    specs: SpecSet, provider: str, declared: list[tuple[str, str, str]]
) -> None:
    schemes = specs.providers[provider].auth
    assert [(s.kind, s.header, s.prefix) for s in schemes] == declared
