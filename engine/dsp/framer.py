"""Re-chunk an outgoing audio byte stream to a platform's message-size rules: :class:`Framer`.

Platforms reject or mangle audio messages of the wrong size (peers.md §2 items 10, 15, 16):

* Vonage: exactly 20 ms per message -> ``Framer(fmt, frame_ms=20)`` (320/640/960 bytes of
  PCM16 at 8/16/24 kHz);
* Exotel: multiples of 320 bytes, at least 3.2 kB, at most 100 kB ->
  ``Framer(fmt, multiple_of_bytes=320, min_bytes=3200, max_bytes=100_000)``;
* Genesys AudioHook: fixed 1600-byte packets -> ``Framer(fmt, min_bytes=1600, max_bytes=1600)``.

A chunk is legal when its size is a multiple of the unit (``multiple_of_bytes``, and always whole
samples of every channel) and lies within ``min_bytes .. max_bytes``. :meth:`Framer.push` returns
every legal chunk it can make as soon as it can make it (the largest one the pending bytes allow,
so a burst of TTS leaves in few messages); :meth:`Framer.flush` pads the rest with the encoding's
silence to the smallest legal size (end of utterance); :meth:`Framer.clear` drops it (barge-in).
"""

from __future__ import annotations

import math

from ..errors import UsageError
from .formats import ALAW, MULAW, OPUS, PCM_8_U, AudioFormat
from .g711 import ALAW_SILENCE, MULAW_SILENCE

__all__ = ["Framer"]

_SILENCE_BYTE = {MULAW: MULAW_SILENCE, ALAW: ALAW_SILENCE, PCM_8_U: 0x80}  # others: 0


class Framer:
    """Cut a byte stream of ``fmt`` audio into chunks a platform accepts."""

    def __init__(self, fmt: AudioFormat, *, frame_ms: float | None = None,
                 multiple_of_bytes: int | None = None, min_bytes: int | None = None,
                 max_bytes: int | None = None) -> None:
        if fmt.encoding == OPUS:
            raise UsageError("opus is framed by its encoder; a Framer takes PCM or G.711")
        sample_bytes = fmt.bytes_per_sample * fmt.channels
        if frame_ms is not None:
            if (multiple_of_bytes, min_bytes, max_bytes) != (None, None, None):
                raise UsageError("give either frame_ms or byte rules, not both")
            size = fmt.frame_bytes(frame_ms)
            if size <= 0 or size != fmt.sample_rate * frame_ms / 1000 * sample_bytes:
                raise UsageError(f"{frame_ms} ms is not a whole number of samples of {fmt}")
            multiple_of_bytes = min_bytes = max_bytes = size
        if multiple_of_bytes is not None and multiple_of_bytes <= 0:
            raise UsageError(f"multiple_of_bytes must be positive, not {multiple_of_bytes}")
        multiple = multiple_of_bytes or 1
        unit = math.lcm(multiple, sample_bytes)  # never split a sample
        smallest = max(unit, -(-(min_bytes or 0) // unit) * unit)
        largest = (max_bytes // unit) * unit if max_bytes is not None else None
        if largest is not None and largest < smallest:
            raise UsageError(f"no chunk size fits multiple_of_bytes={multiple_of_bytes}, "
                             f"min_bytes={min_bytes}, max_bytes={max_bytes} for {fmt}")
        self.format = fmt
        self.unit = unit
        self.min_bytes = smallest
        self.max_bytes = largest
        self.silence = bytes([_SILENCE_BYTE.get(fmt.encoding, 0)])
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting for enough company to make a legal chunk."""
        return len(self._pending)

    def is_legal(self, size: int) -> bool:
        """Whether a chunk of ``size`` bytes obeys the rules."""
        return (size % self.unit == 0 and size >= self.min_bytes
                and (self.max_bytes is None or size <= self.max_bytes))

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every chunk that is ready, in order."""
        pending = self._pending
        pending += data
        chunks = []
        while len(pending) >= self.min_bytes:
            size = len(pending) if self.max_bytes is None else min(len(pending), self.max_bytes)
            size -= size % self.unit
            chunks.append(bytes(pending[:size]))
            del pending[:size]
        return chunks

    def flush(self, pad: bool = True) -> list[bytes]:
        """End of utterance: the rest, padded with silence to the smallest legal size.

        With ``pad=False`` the rest is dropped instead (it cannot be sent as it is).
        """
        if not self._pending:
            return []
        rest = bytes(self._pending)
        self._pending.clear()
        if not pad:
            return []
        size = max(self.min_bytes, -(-len(rest) // self.unit) * self.unit)
        return [rest + self.silence * (size - len(rest))]

    def clear(self) -> None:
        """Barge-in: drop whatever is pending."""
        self._pending.clear()
