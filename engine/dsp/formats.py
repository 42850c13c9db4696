"""Audio formats: the canonical encoding names and the many spellings platforms use for them.

A spec may write an encoding the way its platform does (``audio/x-mulaw``, ``PCMU``, ``slin``,
``pcm16``, ``audio/l16;rate=16000``); :func:`parse_encoding` turns any of them into one of the
canonical names below, and a rate when the spelling carries one.
"""

from __future__ import annotations

from dataclasses import dataclass

PCM_16_LE = "PCM_16_LE"
PCM_16_BE = "PCM_16_BE"
PCM_8_U = "PCM_8_U"
PCM_8_S = "PCM_8_S"
MULAW = "MULAW"
ALAW = "ALAW"
OPUS = "OPUS"

ENCODINGS = (PCM_16_LE, PCM_16_BE, PCM_8_U, PCM_8_S, MULAW, ALAW, OPUS)

#: bytes per sample per channel; Opus is packetised, so it has none.
BYTES_PER_SAMPLE = {PCM_16_LE: 2, PCM_16_BE: 2, PCM_8_U: 1, PCM_8_S: 1, MULAW: 1, ALAW: 1, OPUS: 0}
#: bit depth as the adapter guide's ``bit_depth`` means it (the width of one sample on the wire).
BIT_DEPTH = {PCM_16_LE: 16, PCM_16_BE: 16, PCM_8_U: 8, PCM_8_S: 8, MULAW: 8, ALAW: 8, OPUS: 16}

#: rates Opus can run at natively.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: Opus frame durations libopus accepts, in tenths of a millisecond.
OPUS_FRAME_TENTHS_MS = (25, 50, 100, 200, 400, 600)

_ALIASES = {
    # 16-bit linear, little endian (the usual "L16 over WebSocket"; network order is noted per spec)
    "pcm_16_le": PCM_16_LE, "pcm16": PCM_16_LE, "pcm_16": PCM_16_LE, "pcm": PCM_16_LE,
    "l16": PCM_16_LE, "audio/x-l16": PCM_16_LE, "audio/l16": PCM_16_LE, "slin": PCM_16_LE,
    "slin16": PCM_16_LE, "linear16": PCM_16_LE, "audio/x-raw": PCM_16_LE, "raw": PCM_16_LE,
    "pcm_s16le": PCM_16_LE, "s16le": PCM_16_LE, "lpcm": PCM_16_LE,
    # 16-bit linear, big endian (RTP's network byte order)
    "pcm_16_be": PCM_16_BE, "pcm_s16be": PCM_16_BE, "s16be": PCM_16_BE, "l16be": PCM_16_BE,
    # 8-bit linear
    "pcm_8_u": PCM_8_U, "pcm_8": PCM_8_U, "pcm_u8": PCM_8_U, "u8": PCM_8_U,
    "pcm_8_s": PCM_8_S, "pcm_s8": PCM_8_S, "s8": PCM_8_S,
    # G.711
    "mulaw": MULAW, "ulaw": MULAW, "g711_ulaw": MULAW, "pcmu": MULAW, "audio/x-mulaw": MULAW,
    "audio/mulaw": MULAW, "audio/basic": MULAW, "audio/pcmu": MULAW, "mu-law": MULAW,
    "g711u": MULAW,
    "alaw": ALAW, "g711_alaw": ALAW, "pcma": ALAW, "audio/x-alaw": ALAW, "audio/alaw": ALAW,
    "audio/pcma": ALAW, "a-law": ALAW, "g711a": ALAW,
    # Opus
    "opus": OPUS, "audio/opus": OPUS, "audio/x-opus": OPUS,
}


def parse_encoding(text: str) -> tuple[str, int | None] | None:
    """Return ``(canonical encoding, rate or None)`` for any known spelling, else ``None``.

    Handles MIME parameters such as ``audio/l16;rate=16000`` and ``audio/x-mulaw;rate=8000``.
    """
    if not isinstance(text, str):
        return None
    base, _, params = text.strip().partition(";")
    encoding = _ALIASES.get(base.strip().lower()) or (
        base.strip().upper() if base.strip().upper() in ENCODINGS else None
    )
    if encoding is None:
        return None
    rate = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "rate" and value.strip().isdigit():
            rate = int(value.strip())
    return encoding, rate


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The audio one side of a leg sends or expects: encoding, sample rate, channels."""

    encoding: str
    sample_rate: int
    channels: int = 1

    @property
    def bytes_per_sample(self) -> int:
        return BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_ms(self) -> float:
        """Bytes of one millisecond of audio; 0 for Opus, which has no fixed size."""
        return self.sample_rate * self.channels * BYTES_PER_SAMPLE[self.encoding] / 1000.0

    def frame_bytes(self, ms: float) -> int:
        """Bytes of ``ms`` milliseconds of audio (PCM and G.711 only)."""
        return round(self.sample_rate * ms / 1000.0) * self.channels * self.bytes_per_sample

    def samples(self, ms: float) -> int:
        """Samples per channel in ``ms`` milliseconds."""
        return round(self.sample_rate * ms / 1000.0)

    def __str__(self) -> str:
        ch = "mono" if self.channels == 1 else f"{self.channels}ch"
        return f"{self.encoding}/{self.sample_rate}/{ch}"
