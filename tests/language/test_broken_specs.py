"""One broken spec per kind of mistake, and the exact located message `callbridge check` gives.

The broken files live in ``tests/language/broken/``; each message must name the file, line, column and
JSON path of the mistake, and say what is wrong in a way that points at the fix."""

from __future__ import annotations

import pytest

from engine.cli import main
from tests.conftest import ROOT

EXPECTED = {
    "ai_providers/bad_url.yaml": '{f}:15:3: $.websocket.url: "http://127.0.0.1:8765/ws/v1/echo" must be a ws:// or wss:// URL',
    "ai_providers/no_start.yaml": "{f}:35:3: $.events.outgoing: the AI leg needs an outgoing `start` message",
    "ai_providers/rate_mismatch.yaml": "{f}:13:3: $.media.sampleRate: sampleRate 16000 does not fit pcm16 (the AI Provider protocol: pcm16 runs at 24000)",
    "protocols/bad_policy/protocol.yaml": '{f}:126:9: $.legs.telephony.states.awaiting_handshake.otherwise: "shout" is not one of "ignore", "warn", "reject", "close"',
    "protocols/media_guard/protocol.yaml": "{f}:145:11: $.legs.telephony.states.streaming.transitions.media: a media transition must stay in its state, have no guard and use only 'forward_audio': media frames never fire triggers",
    "protocols/missing_policy/protocol.yaml": "{f}:141:7: $.legs.telephony.states.streaming: event 'timeout' has neither a transition nor a policy in state 'streaming' (add it, or an `otherwise:` policy)",
    "protocols/no_way_out/protocol.yaml": "{f}:157:7: $.legs.telephony.states.stopped: state 'stopped' has no way out and is not final",
    "protocols/reserved_code/protocol.yaml": "{f}:125:11: $.legs.telephony.states.awaiting_handshake.policies.start: close code 1006 is reserved and cannot be sent",
    "protocols/unknown_action/protocol.yaml": "{f}:222:10: $.bridge[0].do[0]: unknown action 'open_ai_legs'; did you mean 'open_ai_leg'?",
    "protocols/unknown_event/protocol.yaml": "{f}:202:11: $.legs.ai.states.active.transitions.transfer: unknown event 'transfer' for the ai leg (its events: media, clear, mark, dtmf, hangup, dial, opened, failed, closed, timeout, hangup_sent)",
    "protocols/unknown_guard/protocol.yaml": "{f}:146:43: $.legs.telephony.states.streaming.transitions.dtmf.guard: unknown guard 'digit_ok' (known: digit_valid, mark_pending, media_format_supported)",
    "protocols/unknown_state/protocol.yaml": "{f}:118:23: $.legs.telephony.states.awaiting_handshake.transitions.connected.to: unknown state 'conected'; did you mean 'connected'?",
    "protocols/unreachable/protocol.yaml": "{f}:164:7: $.legs.telephony.states.limbo: state 'limbo' is unreachable from 'awaiting_handshake'",
    "providers/ambiguous.yaml": "{f}:19:9: $.events.incoming.message_patterns.stop.detection_pattern: same detection_pattern as pattern 'media': messages would be ambiguous",
    "providers/bad_enum.yaml": '{f}:5:3: $.audio.payload: "hex" is not one of "base64", "binary"',
    "providers/bad_fingerprint.yaml": "{f}:8:23: $.events.incoming.message_patterns.connected.fingerprint['start..tracks']: cannot read 'start..tracks' at character 7",
    "providers/bad_path.yaml": "{f}:17:11: $.events.incoming.message_patterns.media.extraction_map.audio: cannot read 'media..payload' at character 7",
    "providers/bit_depth.yaml": "{f}:5:3: $.audio.bit_depth: bit depth 16 does not fit MULAW (8-bit)",
    "providers/checklist_clear.yaml": "{f}:5:1: $.events: checklist control/clear: no outgoing `clear` message (barge-in must be able to drop the platform's queued audio)",
    "providers/checklist_connected.yaml": "{f}:6:3: $.events.incoming: checklist handshake/connected: no incoming pattern emits 'connected'",
    "providers/framing.yaml": "{f}:5:13: $.audio.framing.multiple_of_bytes: multiple_of_bytes 321 is not a whole number of 2-byte samples of PCM_16_LE/8000/mono",
    "providers/missing_required.yaml": "{f}:2:1: $.audio: 'encoding' is required",
    "providers/name_mismatch.yaml": "{f}:1:1: $.provider: provider 'twillio' does not match the file name 'name_mismatch.yaml' (the URL uses the name; keep them equal)",
    "providers/rate_mismatch.yaml": "{f}:4:3: $.audio.sample_rate: sample rate 16000 does not fit MULAW (G.711 runs at 8000)",
    "providers/text_too_long.yaml": "{f}:15:5: $.events.outgoing.clear: message 'clear' renders to 143 bytes with typical values, over connection.max_text_bytes 128 (the peer ignores longer control messages)",
    "providers/unknown_encoding.yaml": "{f}:3:3: $.audio.encoding: unknown encoding 'audio/x-gsm' (canonical: PCM_16_LE, PCM_16_BE, PCM_8_U, PCM_8_S, MULAW, ALAW, OPUS; platform spellings such as audio/x-mulaw, PCMU, L16, slin are accepted)",
    "providers/unknown_event.yaml": "{f}:18:7: $.events.incoming.message_patterns.transfer: unknown event 'transfer' (canonical: connected, start, media, dtmf, mark, clear, stop, hangup)",
    "providers/unknown_field.yaml": "{f}:14:11: $.events.incoming.message_patterns.start.extraction_map.caller: unknown field 'caller' for start (its fields: account_id, bit_depth, call_id, channels, custom, direction, encoding, from, other_leg_call_id, sample_rate, sequence, stream_id, timestamp, to, track); platform extras start with x_",
    "providers/unknown_key.yaml": "{f}:5:3: $.audio.samplerate: unknown key 'samplerate'; did you mean 'sample_rate'?",
    "providers/unknown_reply.yaml": "{f}:10:9: $.events.incoming.message_patterns.connected.reply: reply 'hello' is not an outgoing message",
    "providers/unknown_variable.yaml": "{f}:22:27: $.events.outgoing.clear.streamSid: unknown variable ${stream_sid}; did you mean 'stream_id'? (a canonical field, a context variable, or an x_ field this spec extracts)",
    "providers/wrong_type.yaml": '{f}:4:3: $.audio.sample_rate: "eight thousand" is not one of 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000',
    "providers/yaml_syntax.yaml": "{f}:5:7: $: YAML syntax: expected ',' or ']', but got ':'",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_broken_spec_message(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    path = f"tests/language/broken/{case}"
    assert main(["check", path]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("callbridge check:")]
    assert errors == [EXPECTED[case].replace("{f}", path)]


def test_shipped_specs_are_clean(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_all_errors_come_out_at_once(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check", "tests/language/broken/providers"]) == 1
    err = capsys.readouterr().err
    assert f"{len([c for c in EXPECTED if c.startswith('providers/')])} errors in" in err


def test_whole_spec_folder_errors_are_sorted_by_file_and_line(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from engine.errors import SpecErrors
    from engine.language.loader import load_specs

    root = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", root)
    for case in ("unknown_key", "bit_depth"):
        text = (ROOT / "tests/language/broken/providers" / f"{case}.yaml").read_text()
        (root / "providers" / f"{case}.yaml").write_text(text)
    with pytest.raises(SpecErrors) as info:
        load_specs(root)
    assert [e.location.file.rsplit("/", 1)[-1] for e in info.value.errors] == ["bit_depth.yaml", "unknown_key.yaml"]
