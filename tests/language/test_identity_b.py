"""The caller's identity as vonage, jambonz, asterisk, genesys and generic really send it: each
platform's opening message, shaped as its own documentation or reference code shows it, gives
canonical ``from``, ``to``, ``call_id`` and ``custom``; and each spec declares how the platform
proves itself on the upgrade (``auth:``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from engine.language.loader import SpecSet

ENV: dict[str, dict[str, str]] = {"query": {}, "path": {}, "header": {}}


def opening(specs: SpecSet, provider: str, message: dict[str, Any]) -> dict[str, Any]:
    decoded = specs.providers[provider].decode(orjson.dumps(message).decode(), ENV)
    assert decoded is not None and "start" in decoded.events
    return dict(decoded.fields)


def test_vonage_reads_the_ncco_headers_of_websocket_connected(specs: SpecSet) -> None:
    # callbridge's convention: the answer webhook copies its from/to/uuid into the endpoint's headers
    fields = opening(
        specs,
        "vonage",
        {
            "event": "websocket:connected",
            "content-type": "audio/l16;rate=16000",
            "caller_id": "447700900000",
            "callee_id": "442079460000",
            "uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        },
    )
    assert (fields["from"], fields["to"]) == ("447700900000", "442079460000")
    assert fields["call_id"] == "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    assert fields["custom"]["caller_id"] == "447700900000"


def test_vonage_reads_its_own_example_header_name_too(specs: SpecSet) -> None:
    # Vonage's websockets guide: "headers": {"language": "en-GB", "callerID": "447700900123"}
    fields = opening(
        specs,
        "vonage",
        {
            "event": "websocket:connected",
            "content-type": "audio/l16;rate=16000",
            "language": "en-GB",
            "callerID": "447700900123",
        },
    )
    assert fields["from"] == "447700900123"
    assert "to" not in fields and "call_id" not in fields
    assert fields["custom"]["language"] == "en-GB"


def test_jambonz_metadata_is_merged_into_the_first_frame(specs: SpecSet) -> None:
    # listen.js: Object.assign({sampleRate, mixType}, callInfo, metadata)
    fields = opening(
        specs,
        "jambonz",
        {
            "sampleRate": 8000,
            "mixType": "mono",
            "callSid": "3e5d869a-9c1b-4a6e-8d2f-7b0c1e3a5d9f",
            "direction": "inbound",
            "from": "+15083084809",
            "to": "+15083727777",
            "callId": "935f3b60-2775-123d-a6a1",
            "accountSid": "87f4ab51-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
            "agent": "7",
        },
    )
    assert (fields["from"], fields["to"], fields["call_id"]) == (
        "+15083084809",
        "+15083727777",
        "3e5d869a-9c1b-4a6e-8d2f-7b0c1e3a5d9f",
    )
    assert fields["custom"]["agent"] == "7"


def test_asterisk_numbers_come_from_the_channel_variables_the_dialplan_set(specs: SpecSet) -> None:
    base = {
        "event": "MEDIA_START",
        "connection_id": "e226e283-c90a-4ea9-9e37-389000b9ef47",
        "channel": "WebSocket/connection1-0000001",
        "channel_id": "pbx1-123456789.999",
        "format": "ulaw",
        "optimal_frame_size": 160,
        "ptime": 20,
    }
    fields = opening(
        specs,
        "asterisk",
        {**base, "channel_variables": {"CALLBRIDGE_FROM": "+14155550123", "CALLBRIDGE_TO": "+14155550100"}},
    )
    assert (fields["from"], fields["to"], fields["call_id"]) == ("+14155550123", "+14155550100", "pbx1-123456789.999")
    assert fields["custom"] == {"CALLBRIDGE_FROM": "+14155550123", "CALLBRIDGE_TO": "+14155550100"}
    # Asterisk itself sends no number: then there is none (the engine falls back to ?caller_id=)
    fields = opening(specs, "asterisk", {**base, "channel_variables": {}})
    assert "from" not in fields and "to" not in fields


def test_genesys_open_gives_ani_dnis_conversation_and_input_variables(specs: SpecSet) -> None:
    open_message: dict[str, Any] = {
        "version": "2",
        "type": "open",
        "seq": 1,
        "serverseq": 0,
        "id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "position": "PT0S",
        "parameters": {
            "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
            "conversationId": "090eaa2f-72fa-480a-83e0-8667ff89c0ec",
            "participant": {"id": "883efee8", "ani": "+14155550123", "aniName": "John Doe", "dnis": "+18005556789"},
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
            "inputVariables": {"agent": "7"},
        },
    }
    fields = opening(specs, "genesys", open_message)
    assert (fields["from"], fields["to"]) == ("+14155550123", "+18005556789")
    assert fields["call_id"] == "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
    assert fields["custom"] == {"agent": "7"}
    # AudioHook (monitor) has customConfig instead of inputVariables
    params = {k: v for k, v in open_message["parameters"].items() if k != "inputVariables"}
    fields = opening(specs, "genesys", {**open_message, "parameters": {**params, "customConfig": {"a": 1}}})
    assert fields["custom"] == {"a": 1}


def test_generic_reads_call_from_and_to(specs: SpecSet) -> None:
    fields = opening(
        specs,
        "generic",
        {
            "event": "call_started",
            "call": {"id": "call-7f3a", "direction": "inbound", "from": "+14155550123", "to": "+14155550100"},
        },
    )
    assert (fields["from"], fields["to"], fields["call_id"]) == ("+14155550123", "+14155550100", "call-7f3a")


@pytest.mark.parametrize(
    ("provider", "schemes"),
    [
        ("vonage", [("token", "Authorization", "Bearer", "")]),
        ("jambonz", [("basic", "Authorization", "", "")]),
        ("asterisk", [("basic", "Authorization", "", ""), ("token", "", "", "token")]),
        ("genesys", [("http_message_signature", "", "", "")]),
        ("generic", [("token", "Authorization", "Bearer", ""), ("basic", "Authorization", "", "")]),
    ],
)
def test_each_platform_declares_how_it_proves_itself(
    specs: SpecSet, provider: str, schemes: list[tuple[str, str, str, str]]
) -> None:
    declared = [(s.kind, s.header, s.prefix, s.query) for s in specs.providers[provider].auth]
    assert [d[0] for d in declared] == [s[0] for s in schemes]
    for got, want in zip(declared, schemes, strict=True):
        if want[0] != "http_message_signature":
            assert got == want


def test_genesys_signature_parameters_are_the_reference_servers(specs: SpecSet) -> None:
    (scheme,) = specs.providers["genesys"].auth
    assert scheme.key_header == "X-API-KEY"
    assert scheme.components == (
        "@request-target",
        "@authority",
        "audiohook-organization-id",
        "audiohook-session-id",
        "audiohook-correlation-id",
        "x-api-key",
    )
    assert (scheme.max_age_s, scheme.min_nonce) == (10.0, 22)
