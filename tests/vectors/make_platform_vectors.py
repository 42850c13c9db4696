"""Regenerate the platform transcripts ``tests/vectors/<provider>/call.jsonl`` (deterministic).

One recorded call per platform spec (Twilio's own are made by ``make_vectors.py``). Each
platform's messages are the examples of its documentation as quoted in the reference notes
(``providers.md``: SignalWire's cXML Stream page, Exotel's AgentStream protocol page, Plivo's
Stream Event Protocol, Telnyx's AsyncAPI page and SDK examples, Vonage's WebSockets guide,
jambonz's listen page, Asterisk's chan_websocket page, Genesys' reference implementations, Tata
Smartflo's integration document, the adapter guide's own example), field for field, with real
audio in place of their placeholders: a 440 Hz tone, encoded with the stdlib's audioop (an
implementation independent of callbridge's kernels), in each platform's format and framing.

Every line is an envelope (``{"t", "leg", "frame"|"binary"|"internal"}``) so binary audio and
socket closes are recorded too. Telnyx's call has media frames out of order (it does not
guarantee order) and ``call_pcma.jsonl`` is a Telnyx call negotiated to A-law.

    python tests/vectors/make_platform_vectors.py
"""

from __future__ import annotations

import audioop
import base64
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FRAMES = 25  # 0.5 s of caller audio (20 ms frames)


def tone(rate: int, start: int, count: int, freq: float = 440.0, amp: float = 8000.0) -> bytes:
    return b"".join(
        struct.pack("<h", int(amp * math.sin(2 * math.pi * freq * (start + i) / rate))) for i in range(count)
    )


def encode(pcm: bytes, encoding: str) -> bytes:
    if encoding == "ulaw":
        return audioop.lin2ulaw(pcm, 2)
    if encoding == "alaw":
        return audioop.lin2alaw(pcm, 2)
    return pcm  # PCM16 little-endian


def frames(rate: int, encoding: str, ms: int = 20, count: int = FRAMES) -> list[bytes]:
    n = rate * ms // 1000
    return [encode(tone(rate, i * n, n), encoding) for i in range(count)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Call:
    """Collects one transcript: telephony frames 20 ms apart unless told otherwise."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.t = 0.0

    def text(self, message: dict[str, Any], dt: float = 0.02) -> None:
        self.lines.append({"t": round(self.t, 3), "leg": "telephony", "frame": message})
        self.t += dt

    def binary(self, data: bytes, dt: float = 0.02) -> None:
        self.lines.append({"t": round(self.t, 3), "leg": "telephony", "binary": b64(data)})
        self.t += dt

    def closed(self) -> None:
        self.lines.append({"t": round(self.t, 3), "leg": "telephony", "internal": "closed"})

    def write(self, provider: str, name: str = "call.jsonl") -> None:
        folder = HERE / provider
        folder.mkdir(exist_ok=True)
        with open(folder / name, "w") as out:
            for line in self.lines:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")


def signalwire() -> None:
    # The cXML Stream page's own examples: L16 at 24 kHz, no top-level streamSid on start/media.
    sid = "7d56cc11-536d-4a45-b4fb-ed3d55be843b"
    c = Call()
    c.text({"event": "connected", "protocol": "Call", "version": "0.2.0"})
    c.text(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "streamSid": sid,
                "accountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5",
                "callSid": "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad",
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-L16", "sampleRate": 24000, "channels": 1},
            },
        }
    )
    seq = 2
    for i, frame in enumerate(frames(24000, "pcm")):
        c.text(
            {
                "event": "media",
                "sequenceNumber": str(seq),
                "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": b64(frame)},
            }
        )
        seq += 1
    c.text(
        {"event": "dtmf", "sequenceNumber": str(seq), "streamSid": sid, "dtmf": {"digit": "5", "duration": 2000}}
    )
    c.text({"event": "stop", "sequenceNumber": str(seq + 1)})
    c.closed()
    c.write("signalwire")


def smartflo() -> None:
    sid = "MZ8a1f6c0e2b7d4e9fa3c5b1d2e4f6a7b8"
    call = "CA5c2e9a1b3d7f4e6a8b0c2d4e6f8a0b1c"
    account = "AC7e1d3c5b9a2f4e6d8c0b2a4f6e8d0c2b"
    c = Call()
    c.text({"event": "connected"})
    c.text(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": account,
                "streamSid": sid,
                "callSid": call,
                "from": "9876543210",
                "to": "8047491899",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "bitRate": 64, "bitDepth": 8},
                "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
            },
            "streamSid": sid,
        }
    )
    seq = 2
    for i, frame in enumerate(frames(8000, "ulaw")):
        c.text(
            {
                "event": "media",
                "sequenceNumber": str(seq),
                "media": {"chunk": str(i + 1), "timestamp": str(i * 20), "payload": b64(frame)},
                "streamSid": sid,
            }
        )
        seq += 1
    c.text({"event": "dtmf", "streamSid": sid, "sequenceNumber": str(seq), "dtmf": {"digit": "1"}})
    c.text({"event": "mark", "sequenceNumber": str(seq + 1), "streamSid": sid, "mark": {"name": "mark label"}})
    c.text(
        {
            "event": "stop",
            "sequenceNumber": str(seq + 2),
            "stop": {"accountSid": account, "callSid": call, "reason": "The caller disconnected the call"},
            "streamSid": sid,
        }
    )
    c.closed()
    c.write("smartflo")


def exotel() -> None:
    sid = "MZ3f2a9c7e1b5d4a8c6e0f2b4d6a8c0e1f"
    c = Call()
    c.text({"event": "connected"})
    c.text(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": sid,
            "start": {
                "stream_sid": sid,
                "call_sid": "CA9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
                "account_sid": "AC1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
                "from": "+919876543210",
                "to": "+918047491899",
                "custom_parameters": {"key1": "value1"},
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
            },
        }
    )
    # Exotel streams caller audio about every 100 ms.
    seq = 2
    for i, frame in enumerate(frames(8000, "pcm", ms=100, count=5)):
        c.text(
            {
                "event": "media",
                "sequence_number": str(seq),
                "stream_sid": sid,
                "media": {"chunk": str(i + 1), "timestamp": str(i * 100), "payload": b64(frame)},
            },
            dt=0.1,
        )
        seq += 1
    c.text({"event": "dtmf", "sequence_number": str(seq), "stream_sid": sid, "dtmf": {"digit": "5", "duration": "100"}})
    c.text(
        {
            "event": "stop",
            "sequence_number": str(seq + 1),
            "stream_sid": sid,
            "stop": {
                "call_sid": "CA9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
                "account_sid": "AC1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
                "reason": "callended",
            },
        }
    )
    c.closed()
    c.write("exotel")


def plivo() -> None:
    stream = "87654321-4321-4321-4321-cba987654321"
    c = Call()
    c.text(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": "12345678-1234-1234-1234-123456789abc",
                "streamId": stream,
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": "userId=12345;sessionId=abc-xyz",
        }
    )
    seq = 2
    for i, frame in enumerate(frames(8000, "ulaw")):
        c.text(
            {
                "event": "media",
                "sequenceNumber": seq,
                "streamId": stream,
                "media": {"track": "inbound", "timestamp": str(1705312200000 + i * 20), "chunk": i + 1,
                          "payload": b64(frame)},
                "extra_headers": "userId=12345;sessionId=abc-xyz",
            }
        )
        seq += 1
    c.text(
        {
            "event": "dtmf",
            "sequenceNumber": seq,
            "streamId": stream,
            "dtmf": {"track": "inbound", "digit": "5", "timestamp": "1705312200600"},
            "extra_headers": "userId=12345;sessionId=abc-xyz",
        }
    )
    c.text({"sequenceNumber": 0, "event": "clearedAudio", "streamId": stream})
    c.closed()  # socket close is Plivo's authoritative end
    c.write("plivo")


def telnyx(encoding: str = "PCMU", name: str = "call.jsonl") -> None:
    stream = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
    control = "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"
    c = Call()
    c.text({"event": "connected", "version": "1.0.0"})
    c.text(
        {
            "event": "start",
            "sequence_number": "1",
            "start": {
                "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                "call_control_id": control,
                "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
                "from": "+13122010094",
                "to": "+13122123456",
                "media_format": {"encoding": encoding, "sample_rate": 8000, "channels": 1},
            },
            "stream_id": stream,
        }
    )
    media = [
        {
            "event": "media",
            "sequence_number": str(i + 2),
            "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": b64(frame)},
            "stream_id": stream,
        }
        for i, frame in enumerate(frames(8000, "ulaw" if encoding == "PCMU" else "alaw"))
    ]
    # Telnyx does not guarantee order: every third pair of frames arrives swapped.
    for i in range(0, len(media) - 1, 3):
        media[i], media[i + 1] = media[i + 1], media[i]
    for message in media:
        c.text(message)
    seq = len(media) + 2
    c.text({"event": "dtmf", "stream_id": stream, "occurred_at": "2025-06-05T08:54:19.698408Z",
            "sequence_number": str(seq), "dtmf": {"digit": "1"}})
    c.text(
        {
            "event": "stop",
            "sequence_number": str(seq + 1),
            "stop": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237", "call_control_id": control},
            "stream_id": stream,
        }
    )
    c.closed()
    c.write("telnyx", name)


def vonage() -> None:
    c = Call()
    c.text({"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "language": "en-GB",
            "caller-id": "447700900123"})
    for frame in frames(16000, "pcm"):
        c.binary(frame)
    c.text({"event": "websocket:dtmf", "digit": "5", "duration": 260})
    c.closed()  # the caller hanging up closes the socket
    c.write("vonage")


def jambonz() -> None:
    c = Call()
    c.text(
        {
            "sampleRate": 16000,
            "mixType": "mono",
            "callSid": "3e5d869a-9c1b-4a6e-8d2f-7b0c1e3a5d9f",
            "direction": "inbound",
            "from": "rehan",
            "to": "1234",
            "sipStatus": 200,
            "sipReason": "OK",
            "callStatus": "in-progress",
            "accountSid": "87f4ab51-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
            "traceId": "ccb228b2c1d0e9f8",
        }
    )
    for frame in frames(16000, "pcm"):
        c.binary(frame)
    c.text({"event": "dtmf", "dtmf": "2", "duration": "1600"})
    c.closed()
    c.write("jambonz")


def asterisk() -> None:
    c = Call()
    c.text(
        {
            "event": "MEDIA_START",
            "connection_id": "e226e283-c90a-4ea9-9e37-389000b9ef47",
            "channel": "WebSocket/connectionid",
            "channel_id": "pbx1-123456789.999",
            "format": "ulaw",
            "optimal_frame_size": 160,
            "ptime": 20,
            "channel_variables": {"SOME_CHANNEL_VARIABLE": "some value"},
        }
    )
    for frame in frames(8000, "ulaw"):
        c.binary(frame)
    c.text({"event": "DTMF_END", "channel_id": "pbx1-123456789.999", "digit": "5"})
    c.text({"event": "MEDIA_XOFF", "channel_id": "pbx1-123456789.999"})
    c.closed()  # the channel hanging up closes the socket
    c.write("asterisk")


def genesys() -> None:
    session = "e160e428-53e2-487c-977d-96989bf5c99d"
    c = Call()
    c.text(
        {
            "version": "2",
            "type": "open",
            "seq": 1,
            "serverseq": 0,
            "id": session,
            "position": "PT0S",
            "parameters": {
                "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
                "conversationId": "090eaa2f-72fa-480a-83e0-8667ff89c0ec",
                "participant": {"id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0", "ani": "+1-555-555-1234",
                                "aniName": "John Doe", "dnis": "+1-800-555-6789"},
                "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}],
                "language": "en-US",
            },
        }
    )
    for i, frame in enumerate(frames(8000, "ulaw")):
        c.binary(frame)
        if i == 10:
            c.text({"version": "2", "type": "ping", "seq": 2, "serverseq": 1, "id": session, "position": "PT0.24S",
                    "parameters": {"rtt": "PT0.05S"}})
    c.text({"version": "2", "type": "dtmf", "seq": 3, "serverseq": 2, "id": session, "position": "PT0.5S",
            "parameters": {"digit": "5"}})
    c.text({"version": "2", "type": "close", "seq": 4, "serverseq": 2, "id": session, "position": "PT0.52S",
            "parameters": {"reason": "end"}})
    c.closed()
    c.write("genesys")


def generic() -> None:
    c = Call()
    c.text({"event": "connection_established", "connection": {"status": "ok"}})
    c.text({"event": "call_started", "call": {"id": "call-7f3a", "direction": "inbound"}})
    for frame in frames(8000, "pcm"):
        c.text({"event": "audio_data", "payload": {"audio_data": b64(frame)}})
    c.closed()
    c.write("generic")


MAKERS: dict[str, Callable[[], None]] = {
    "signalwire": signalwire,
    "smartflo": smartflo,
    "exotel": exotel,
    "plivo": plivo,
    "telnyx": telnyx,
    "vonage": vonage,
    "jambonz": jambonz,
    "asterisk": asterisk,
    "genesys": genesys,
    "generic": generic,
}

if __name__ == "__main__":
    for make in MAKERS.values():
        make()
    telnyx("PCMA", "call_pcma.jsonl")
