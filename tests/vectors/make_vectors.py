"""Regenerate the Twilio transcripts in this folder (deterministic; run from the repo root).

The message shapes are Twilio's documented examples (reference: Twilio Media Streams
"WebSocket messages"), field for field, with real audio in place of the docs' placeholder
payloads: a 440 Hz tone for the caller, encoded with the stdlib's audioop (an implementation
independent of callbridge's kernels). The AI's side (envelope lines) speaks the AI Provider protocol.

    python tests/vectors/make_vectors.py
"""

from __future__ import annotations

import audioop
import base64
import json
import math
import struct
from pathlib import Path

HERE = Path(__file__).parent
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA3e0f5e25d5f5b5a2e7d54f3b6e1c1d1f"
ACCOUNT = "AC25e16e9a716a4a1786a7c83f58e30482"


def tone(freq: float, rate: int, start: int, count: int, amp: float = 8000.0) -> bytes:
    return b"".join(
        struct.pack("<h", int(amp * math.sin(2 * math.pi * freq * (start + i) / rate))) for i in range(count)
    )


def caller_frame(index: int) -> str:
    pcm = tone(440.0, 8000, index * 160, 160)
    return base64.b64encode(audioop.lin2ulaw(pcm, 2)).decode()


def ai_frame(index: int) -> str:
    return base64.b64encode(tone(660.0, 24000, index * 480, 480, 6000.0)).decode()


def start_message(seq: int) -> dict:
    return {
        "event": "start",
        "sequenceNumber": str(seq),
        "start": {
            "accountSid": ACCOUNT,
            "streamSid": SID,
            "callSid": CALL,
            "tracks": ["inbound"],
            "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": SID,
    }


def media(seq: int, chunk: int) -> dict:
    return {
        "event": "media",
        "sequenceNumber": str(seq),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * 20),
            "payload": caller_frame(chunk - 1),
        },
        "streamSid": SID,
    }


def write(name: str, lines: list[dict | str]) -> None:
    with open(HERE / "twilio" / name, "w") as out:
        for line in lines:
            out.write((line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))) + "\n")


def call() -> None:
    """connected, start, 25 media, dtmf, 5 media, a stray mark echo, stop."""
    lines: list[dict | str] = [{"event": "connected", "protocol": "Call", "version": "1.0.0"}, start_message(1)]
    seq, chunk = 2, 1
    for _ in range(25):
        lines.append(media(seq, chunk))
        seq, chunk = seq + 1, chunk + 1
    lines.append(
        {
            "event": "dtmf",
            "streamSid": SID,
            "sequenceNumber": str(seq),
            "dtmf": {"track": "inbound_track", "digit": "1"},
        }
    )
    seq += 1
    for _ in range(5):
        lines.append(media(seq, chunk))
        seq, chunk = seq + 1, chunk + 1
    lines.append({"event": "mark", "sequenceNumber": str(seq), "streamSid": SID, "mark": {"name": "my label"}})
    seq += 1
    lines.append(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "stop": {"accountSid": ACCOUNT, "callSid": CALL},
            "streamSid": SID,
        }
    )
    write("call.jsonl", lines)


def bargein() -> None:
    """The AI speaks 1 s with two marks, the caller barges in after 0.3 s, Twilio echoes the
    pending marks on clear (they are cleared, not played), then the caller hangs up."""
    env: list[dict | str] = []
    t = 0.0
    env.append({"t": t, "leg": "telephony", "frame": {"event": "connected", "protocol": "Call", "version": "1.0.0"}})
    env.append({"t": 0.01, "leg": "telephony", "frame": start_message(1)})
    seq, chunk = 2, 1
    env.append({"t": 0.05, "leg": "ai", "frame": {"event": "media", "media": {"payload": ai_frame(0)}}})
    for i in range(1, 25):
        env.append({"t": 0.05, "leg": "ai", "frame": {"event": "media", "media": {"payload": ai_frame(i)}}})
    env.append({"t": 0.05, "leg": "ai", "frame": {"event": "mark", "mark": {"name": "part-1"}}})
    for i in range(25, 50):
        env.append({"t": 0.05, "leg": "ai", "frame": {"event": "media", "media": {"payload": ai_frame(i)}}})
    env.append({"t": 0.05, "leg": "ai", "frame": {"event": "mark", "mark": {"name": "part-2"}}})
    t = 0.06
    for _ in range(15):
        env.append({"t": round(t, 3), "leg": "telephony", "frame": media(seq, chunk)})
        seq, chunk, t = seq + 1, chunk + 1, t + 0.02
    env.append({"t": 0.36, "leg": "ai", "frame": {"event": "clear"}})
    # Twilio echoes every pending mark when it clears (callbridge names them cb1, cb2 on the wire).
    env.append(
        {
            "t": 0.37,
            "leg": "telephony",
            "frame": {"event": "mark", "sequenceNumber": str(seq), "streamSid": SID, "mark": {"name": "cb1"}},
        }
    )
    env.append(
        {
            "t": 0.37,
            "leg": "telephony",
            "frame": {"event": "mark", "sequenceNumber": str(seq + 1), "streamSid": SID, "mark": {"name": "cb2"}},
        }
    )
    seq += 2
    t = 0.38
    for _ in range(5):
        env.append({"t": round(t, 3), "leg": "telephony", "frame": media(seq, chunk)})
        seq, chunk, t = seq + 1, chunk + 1, t + 0.02
    env.append(
        {
            "t": 0.5,
            "leg": "telephony",
            "frame": {
                "event": "stop",
                "sequenceNumber": str(seq),
                "stop": {"accountSid": ACCOUNT, "callSid": CALL},
                "streamSid": SID,
            },
        }
    )
    env.append({"t": 0.51, "leg": "ai", "internal": "closed"})
    env.append({"t": 0.52, "leg": "telephony", "internal": "closed"})
    write("bargein.jsonl", env)


if __name__ == "__main__":
    call()
    bargein()
