"""The audio pipeline interface the call core uses: one converter per call and direction.

``make_converter(src, dst)`` returns an object with ``convert(bytes) -> list[bytes]`` (zero or
more frames out: Opus output is packetised), ``reset()`` (barge-in: drop filter state and any
partial frame) and ``flush() -> list[bytes]`` (end of utterance). Equal formats pass through
untouched; everything else goes to the numba transcoder of :mod:`engine.dsp.transcoder`.
"""

from __future__ import annotations

from typing import Protocol

from engine.dsp.formats import OPUS, AudioFormat
from engine.errors import CodecError


class Converter(Protocol):
    """Converts one direction of a call's audio, keeping its state across frames."""

    src: AudioFormat
    dst: AudioFormat

    def convert(self, data: bytes) -> list[bytes]:
        """Convert one frame; the output may be empty (held for the next) or several pieces."""
        ...

    def reset(self) -> None:
        """Forget the history (filter state, partial input): at barge-in."""
        ...

    def flush(self) -> list[bytes]:
        """What is still held, at the end of a stream."""
        ...


class PassThrough:
    """Both sides speak the same format: the bytes go through untouched."""

    __slots__ = ("dst", "src")

    def __init__(self, fmt: AudioFormat) -> None:
        self.src = self.dst = fmt

    def convert(self, data: bytes) -> list[bytes]:
        """The frame itself."""
        return [data] if data else []

    def reset(self) -> None:
        """Nothing is held."""

    def flush(self) -> list[bytes]:
        """Nothing is held."""
        return []


class TranscodingConverter:
    """Adapts :class:`engine.dsp.transcoder.Transcoder` to the converter interface."""

    __slots__ = ("_packets", "_t", "dst", "src")

    def __init__(self, src: AudioFormat, dst: AudioFormat, call_id: str, leg: str) -> None:
        from engine.dsp.transcoder import Transcoder

        self.src, self.dst = src, dst
        self._t = Transcoder(src, dst, call_id=call_id, leg=leg)
        self._packets = dst.encoding == OPUS

    def convert(self, data: bytes) -> list[bytes]:
        """Transcode one frame (Opus output: one packet per piece)."""
        if self._packets:
            return list(self._t.convert_packets(data))
        out = self._t.convert(data)
        return [out] if out else []

    def reset(self) -> None:
        """Barge-in: forget the filter history and any partial frame."""
        self._t.reset()

    def flush(self) -> list[bytes]:
        """The tail the resampler still holds, at the end of a stream."""
        if self._packets:
            return self._t.flush_packets()
        out = self._t.flush()
        return [out] if out else []


def make_converter(src: AudioFormat, dst: AudioFormat, *, call_id: str = "", leg: str = "") -> Converter:
    """A converter from ``src`` to ``dst`` for one call and direction."""
    if src == dst:
        return PassThrough(src)
    try:
        return TranscodingConverter(src, dst, call_id, leg)
    except ImportError as exc:  # the audio path is not installed in this build
        raise CodecError(f"no transcoder for {src} -> {dst}: {exc}", call_id=call_id, leg=leg) from None
