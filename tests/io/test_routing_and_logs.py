"""The adapter route (the adapter guide), number masking, and the call simulator's messages."""

from __future__ import annotations

import io
import uuid

import orjson

from engine.core.session import CallRoute
from engine.io.callsim import PlatformSpeaker
from engine.io.logs import JsonLog, mask_number
from engine.io.routing import Refusal, parse_adapter_path
from engine.language.loader import SpecSet

PROVIDERS = ("twilio", "exotel")


def test_seed_002_example_urls() -> None:
    route = parse_adapter_path("/ws-adapter/twilio/inbound/123/456/1234567890?caller_id=919701966915", PROVIDERS)
    assert isinstance(route, CallRoute)
    assert (route.provider, route.call_type, route.agent_id, route.outlet_id) == ("twilio", "inbound", 123, 456)
    assert (route.virtual_number, route.caller_id) == ("1234567890", "919701966915")
    route = parse_adapter_path("/ws-adapter/exotel/outbound/789/012/09876543211?caller_id=9701966915", PROVIDERS)
    assert isinstance(route, CallRoute) and route.outlet_id == 12 and route.call_type == "outbound"


def test_caller_id_defaults_to_a_uuid_and_plus_survives() -> None:
    route = parse_adapter_path("/ws-adapter/twilio/inbound/1/2/%2B14155550100", PROVIDERS)
    assert isinstance(route, CallRoute)
    assert uuid.UUID(route.caller_id) and route.virtual_number == "+14155550100"
    route = parse_adapter_path("/ws-adapter/twilio/inbound/1/2/+14155550100?caller_id=+919701966915", PROVIDERS)
    assert isinstance(route, CallRoute) and route.caller_id == "+919701966915"


def test_refusals_name_the_part() -> None:
    cases = {
        "/ws-adapter/vonage/inbound/1/2/123456": (404, "unknown provider 'vonage'"),
        "/ws-adapter/twilio/both/1/2/123456": (400, "call_type"),
        "/ws-adapter/twilio/inbound/1.5/2/123456": (400, "agent_id"),
        "/ws-adapter/twilio/inbound/1/-2/123456": (400, "outlet_id"),
        "/ws-adapter/twilio/inbound/1/2/12ab": (400, "virtual_number"),
    }
    for path, (status, words) in cases.items():
        refusal = parse_adapter_path(path, PROVIDERS)
        assert isinstance(refusal, Refusal) and refusal.status == status and words in refusal.message, path


def test_numbers_are_masked_unless_asked() -> None:
    assert mask_number("+919701966915") == "+91*******915"
    out = io.StringIO()
    JsonLog(out).event("info", "call.accepted", "hi", call_id="c1", leg="telephony",
                       fields={"caller_id": "+919701966915", "virtual_number": "+14155550100"})
    line = orjson.loads(out.getvalue())
    assert line["caller_id"] == "+91*******915" and line["call_id"] == "c1" and line["code"] == "call.accepted"
    assert set(line) >= {"ts", "level", "call_id", "leg", "code", "message"}
    out = io.StringIO()
    JsonLog(out, show_numbers=True).event("info", "x", "y", fields={"caller_id": "+919701966915"})
    assert orjson.loads(out.getvalue())["caller_id"] == "+919701966915"


def test_simulated_platform_messages_decode_as_the_spec_says(specs: SpecSet) -> None:
    peer = specs.providers["twilio"]
    speaker = PlatformSpeaker(peer)
    env: dict[str, dict[str, str]] = {"query": {}, "path": {}, "header": {}}
    start = speaker.message("start", {"stream_id": "MZ1", "call_id": "CA1", "encoding": "audio/x-mulaw",
                                      "sample_rate": 8000, "channels": 1, "sequence": 1})
    assert start is not None
    decoded = peer.decode(start, env)
    assert decoded is not None and decoded.events == ("start",) and decoded.fields["stream_id"] == "MZ1"
    media = speaker.message("media", {"audio": b"\xff" * 160, "sequence": 2})
    assert media is not None
    decoded = peer.decode(media, env)
    assert decoded is not None and decoded.fields["audio"] == b"\xff" * 160
    assert speaker.read('{"event": "clear", "streamSid": "MZ1"}')[0] == "clear"
