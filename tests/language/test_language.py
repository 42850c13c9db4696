"""The mapping language: paths, detection, extraction with coercion, templates, the adapter
guide's own example."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest

from engine.errors import FieldError, PathSyntaxError, ProtocolErrorKind, RemoteProtocolError, TemplateSyntaxError
from engine.language.extract import compile_condition, compile_rule
from engine.language.loader import SpecSet, load_peer
from engine.language.paths import MISSING, compile_getter, parse
from engine.language.templates import Template

# The adapter guide's "Event Mapping Configuration" example, verbatim.
GUIDE_EXAMPLE = """{
"provider": "guide",
"events": {
"incoming": {
"message_patterns": {
"connected": {
"detection_pattern": {"event": "connection_established"},
"extraction_map": {"status": "connection.status"}
},
"start": {
"detection_pattern": {"event": "call_started"},
"extraction_map": {"call_id": "call.id", "direction": "call.direction"}
},
"media": {"detection_pattern": {"event": "audio_data"}, "extraction_map": {"audio": "payload.audio_data"}},
"clear": {"detection_pattern": {"event": "buffer_clear"}, "extraction_map": {"action": "control.action"}}
}
}
}
}"""


class TestPaths:
    def test_dotted_and_indexed(self) -> None:
        assert parse("start.tracks[0]") == ("", ("start", "tracks", 0))
        assert parse("a['b.c'].d") == ("", ("a", "b.c", "d"))
        get = compile_getter("a.b[1].c")
        assert get({"a": {"b": [{}, {"c": 7}]}}, {}) == 7
        assert get({"a": {"b": [{}]}}, {}) is MISSING
        assert get({"a": "text"}, {}) is MISSING

    def test_roots(self) -> None:
        env = {"query": {"sample-rate": "16000"}, "path": {"agent_id": 5}, "header": {"x-token": "t"}, "frame": b"\x01"}
        assert compile_getter("$query.sample-rate")({}, env) == "16000"
        assert compile_getter("$path.agent_id")({}, env) == 5
        assert compile_getter("$header.X-Token")({}, env) == "t"
        assert compile_getter("$frame")({}, env) == b"\x01"
        assert compile_getter("$message")({"a": 1}, env) == {"a": 1}

    @pytest.mark.parametrize("bad", ["", "a..b", "$nowhere.x", "$frame.x", "$query", "a[x]"])
    def test_bad_paths(self, bad: str) -> None:
        with pytest.raises(PathSyntaxError):
            parse(bad)


class TestDetection:
    def test_conditions(self) -> None:
        msg = {"event": "media", "n": 1, "type": "websocket:dtmf"}
        assert compile_condition("event", "media").holds(msg, {})
        assert not compile_condition("n", True).holds(msg, {})  # 1 is not True
        assert compile_condition("event", {"one_of": ["start", "media"]}).holds(msg, {})
        assert compile_condition("start.streamSid", {"present": False}).holds(msg, {})
        assert compile_condition("type", {"prefix": "websocket:"}).holds(msg, {})

    def test_index_prefers_the_most_specific_pattern(self, specs: SpecSet) -> None:
        twilio = specs.providers["twilio"]
        assert twilio.decoder.index_key == "event"
        pattern = twilio.decoder.detect({"event": "media", "media": {"payload": ""}}, {})
        assert pattern is not None and pattern.emits == ("media",)

    def test_unknown_and_malformed(self, specs: SpecSet) -> None:
        twilio = specs.providers["twilio"]
        with pytest.raises(RemoteProtocolError, match=r"unknown message \(event='transfer'\)") as info:
            twilio.decode('{"event": "transfer"}', {})
        assert info.value.kind is ProtocolErrorKind.UNKNOWN
        with pytest.raises(RemoteProtocolError, match="malformed JSON") as info:
            twilio.decode('{"event": "media",', {})
        assert info.value.kind is ProtocolErrorKind.MALFORMED and info.value.close_code == 1007
        with pytest.raises(RemoteProtocolError, match="expected a JSON object, got list"):
            twilio.decode("[1, 2]", {})
        with pytest.raises(RemoteProtocolError, match=r"field 'audio' at media\.payload: payload is not valid base64"):
            twilio.decode('{"event": "media", "media": {"payload": "%%%"}}', {})
        with pytest.raises(RemoteProtocolError, match=r"no value at media.payload \(field 'audio' is required\)"):
            twilio.decode('{"event": "media", "media": {}}', {})
        with pytest.raises(RemoteProtocolError, match="sends no binary frames"):
            twilio.decode(b"\x00\x01", {})


class TestExtraction:
    def test_numbers_as_strings_become_ints(self, specs: SpecSet) -> None:
        payload = base64.b64encode(b"\xff" * 160).decode()
        decoded = specs.providers["twilio"].decode(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": "3",
                    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload},
                    "streamSid": "MZ1",
                }
            ),
            {},
        )
        assert decoded is not None
        assert decoded.fields == {"audio": b"\xff" * 160, "sequence": 3, "chunk": 1, "timestamp": 5, "track": "inbound"}

    def test_rule_forms(self) -> None:
        alt = compile_rule("stream_id", ["stream_sid", "streamSid"], "str", required=False, binary_frame=False)
        assert alt.read({"streamSid": "MZ"}, {}) == "MZ"
        default = compile_rule(
            "sample_rate", {"path": "$query.sample-rate", "default": 8000}, "int", required=False, binary_frame=False
        )
        assert default.read({}, {"query": {}}) == 8000
        assert default.read({}, {"query": {"sample-rate": "16000Hz"}}) == 16000
        mapped = compile_rule(
            "encoding", {"path": "enc", "map": {"PCMU": "MULAW"}}, "str", required=False, binary_frame=False
        )
        assert mapped.read({"enc": "PCMU"}, {}) == "MULAW"
        kv = compile_rule(
            "custom", {"path": "extra_headers", "decode": "kv"}, "object", required=False, binary_frame=False
        )
        assert kv.read({"extra_headers": "userId=12345;sessionId=abc-xyz"}, {}) == {
            "userId": "12345",
            "sessionId": "abc-xyz",
        }
        constant = compile_rule("channels", {"value": 1}, "int", required=False, binary_frame=False)
        assert constant.read({}, {}) == 1
        binary = compile_rule("audio", "$frame", "bytes", required=True, binary_frame=True)
        assert binary.read(None, {"frame": b"\x01\x02"}) == b"\x01\x02"
        with pytest.raises(FieldError, match="'abc' is not an integer"):
            compile_rule("sequence", "n", "int", required=False, binary_frame=False).read({"n": "abc"}, {})


class TestTemplates:
    def test_fast_path_equals_a_plain_dump(self) -> None:
        tmpl = Template("media", {"event": "media", "streamSid": "${stream_id}", "media": {"payload": "${audio}"}})
        out = tmpl.render({"audio": b"\x00\x01"}, {"stream_id": 'MZ"1'})
        assert orjson.loads(out) == {"event": "media", "streamSid": 'MZ"1', "media": {"payload": "AAE="}}

    def test_conversions_optionals_and_formats(self) -> None:
        tmpl = Template(
            "t",
            {"seq": "${seq:str}", "n": "${media_seq}", "d": "${duration?}", "id": "v2:${call_id}", "l": ["${digit}"]},
        )
        assert orjson.loads(tmpl.render({"digit": "5"}, {"seq": 3, "media_seq": 4, "call_id": "abc"})) == {
            "seq": "3",
            "n": 4,
            "id": "v2:abc",
            "l": ["5"],
        }
        assert (
            orjson.loads(tmpl.render({"digit": "5", "duration": 100}, {"seq": 3, "media_seq": 4, "call_id": "x"}))["d"]
            == 100
        )

    def test_binary_frames(self) -> None:
        tmpl = Template("media", {"$frame": "binary"})
        assert tmpl.binary and tmpl.render({"audio": b"\x01"}, {}) == b"\x01"

    @pytest.mark.parametrize("bad", [{"${x}": 1}, {"$weird": 1}, {"a": "${x"}])
    def test_bad_templates(self, bad: dict) -> None:
        with pytest.raises(TemplateSyntaxError):
            Template("t", bad)


def test_the_adapter_guides_example_loads_unchanged(specs: SpecSet, tmp_path: Path) -> None:
    folder = tmp_path / "providers"
    folder.mkdir()
    (folder / "guide.json").write_text(GUIDE_EXAMPLE)
    peer, errors = load_peer(folder / "guide.json", "provider", specs.protocol)
    assert errors == [] and peer is not None
    assert str(peer.audio.inbound) == "PCM_16_LE/8000/mono"  # the guide's audio parameters
    decoded = peer.decode('{"event": "call_started", "call": {"id": "c1", "direction": "inbound"}}', {})
    assert (
        decoded is not None
        and decoded.events == ("start",)
        and decoded.fields == {"call_id": "c1", "direction": "inbound"}
    )
    # No outgoing messages declared: callbridge answers in the platform's own shapes.
    assert orjson.loads(peer.templates["media"].render({"audio": b"\x00\x00"}, {})) == {
        "event": "audio_data",
        "payload": {"audio_data": "AAA="},
    }
    assert orjson.loads(peer.templates["clear"].render({}, {})) == {"event": "buffer_clear"}
