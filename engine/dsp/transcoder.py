"""Per-call audio conversion between a telephony leg and an AI leg: :class:`Transcoder`.

Build one ``Transcoder(src, dst, call_id=..., leg=...)`` per call and direction, once. Every frame
then costs one fused numba call (decode -> mix to mono -> resample -> encode, see
:func:`engine.dsp.kernels.transcode`) into preallocated buffers, plus the returned ``bytes``.

Which method to call depends on the destination:

* PCM or G.711 destination: ``convert(data) -> bytes``, ``flush() -> bytes``,
  ``conceal(ms) -> bytes``. The output is a continuous byte stream; re-chunk it for the platform
  with :class:`engine.dsp.framer.Framer`.
* Opus destination: ``convert_packets(data) -> list[bytes]``, ``flush_packets()``,
  ``conceal_packets(ms)``. Each element is one Opus packet of ``opus_frame_ms``; a call returns
  ``[]`` until a whole frame has been collected, and may return several.

The source side is symmetric: for PCM and G.711, ``data`` is any slice of the byte stream (a
partial sample, such as an odd byte of 16-bit PCM, waits for the next call); for Opus, ``data``
is exactly one packet.

When ``src == dst``, ``convert`` returns the very same ``bytes`` object (no work at all).

Channels: stereo input is mixed to mono (the average of both channels); a stereo destination
gets the mono signal on both channels.

Opus runs at the PCM side's rate whenever libopus supports it (8, 12, 16, 24, 48 kHz): Opus
packets do not depend on the rate they were encoded or are decoded at, so ``MULAW/8000 ->
OPUS/48000`` needs no resampling, and decoding straight to 8 kHz is 4× cheaper than to 48 kHz.

Stream events, all without any clock:

* ``reset()``: barge-in / clear. Drops the resampler's history, a pending partial sample and a
  partial Opus frame, so no tail of the interrupted audio leaks out.
* ``flush()``: end of utterance. Emits the resampler's ringing tail (and, for Opus, the last
  partial frame padded with silence) and starts afresh.
* ``conceal(ms)``: a frame did not arrive. Emits ``ms`` of silence through the filter for PCM and
  G.711 sources, and libopus packet-loss concealment for Opus sources.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedAudio, UsageError
from . import kernels
from .filters import SUPPORTED_RATES, design_polyphase
from .formats import (
    ALAW,
    MULAW,
    OPUS,
    OPUS_RATES,
    PCM_8_S,
    PCM_8_U,
    PCM_16_BE,
    PCM_16_LE,
    AudioFormat,
)
from .opus import OpusDecoder, OpusEncoder

__all__ = ["Transcoder"]

_KERNEL_CODES = {
    PCM_16_LE: kernels.CODE_PCM_16_LE, PCM_16_BE: kernels.CODE_PCM_16_BE,
    PCM_8_U: kernels.CODE_PCM_8_U, PCM_8_S: kernels.CODE_PCM_8_S,
    MULAW: kernels.CODE_MULAW, ALAW: kernels.CODE_ALAW,
}
_OPUS_PCM_CODE = kernels._NATIVE_PCM16  # libopus reads and writes native-endian int16
_transcode = kernels.transcode  # a module global: one attribute lookup less per frame
_USE_PACKETS = "the destination is opus: use convert_packets(), flush_packets(), conceal_packets()"
_INITIAL_MS = 120  # buffers start with room for the longest Opus packet; they grow if needed


def _check(fmt: AudioFormat, side: str) -> None:
    if fmt.encoding != OPUS and fmt.encoding not in _KERNEL_CODES:
        raise UnsupportedAudio(f"{side} encoding {fmt.encoding!r} is not supported")
    rates = OPUS_RATES if fmt.encoding == OPUS else SUPPORTED_RATES
    if fmt.sample_rate not in rates:
        raise UnsupportedAudio(f"{side} rate {fmt.sample_rate} Hz is not supported for "
                               f"{fmt.encoding}; use one of {rates}")
    if fmt.channels not in (1, 2):
        raise UnsupportedAudio(f"{side} has {fmt.channels} channels; 1 or 2 are supported")


class Transcoder:
    """Convert one direction of one call from ``src`` to ``dst`` (see the module docstring)."""

    def __init__(self, src: AudioFormat, dst: AudioFormat, *, call_id: str = "", leg: str = "",
                 opus_frame_ms: float = 20, opus_bitrate: int | None = None,
                 opus_complexity: int = 5) -> None:
        _check(src, "source")
        _check(dst, "destination")
        self.src = src
        self.dst = dst
        self.call_id = call_id
        self.leg = leg
        self.passthrough = src == dst
        self._decoder: OpusDecoder | None = None
        self._encoder: OpusEncoder | None = None
        in_rate, in_code = src.sample_rate, _KERNEL_CODES.get(src.encoding, _OPUS_PCM_CODE)
        out_rate, out_code = dst.sample_rate, _KERNEL_CODES.get(dst.encoding, _OPUS_PCM_CODE)
        if src.encoding == OPUS and not self.passthrough:
            if dst.encoding != OPUS and dst.sample_rate in OPUS_RATES:
                in_rate = dst.sample_rate  # decode straight to the rate we need
            self._decoder = OpusDecoder(in_rate, src.channels, call_id=call_id, leg=leg)
        if dst.encoding == OPUS and not self.passthrough:
            if src.encoding != OPUS and src.sample_rate in OPUS_RATES:
                out_rate = src.sample_rate  # encode at the source rate: no resampling
            self._encoder = OpusEncoder(out_rate, dst.channels, opus_frame_ms,
                                        bitrate=opus_bitrate, complexity=opus_complexity,
                                        call_id=call_id, leg=leg)
        self._filter = design_polyphase(in_rate, out_rate)
        self._bank = self._filter.bank
        #: PCM/G.711 on both sides: convert() may take the short path.
        self._direct = not self.passthrough and self._decoder is None and self._encoder is None
        self._in_frame_bytes = src.channels * (2 if in_code <= kernels.CODE_PCM_16_BE else 1)
        self._out_frame_bytes = dst.channels * (2 if out_code <= kernels.CODE_PCM_16_BE else 1)
        self._state = np.zeros(kernels.STATE_SIZE, dtype=np.int64)
        self._state[kernels.STATE_DOWN] = self._filter.down
        self._state[kernels.STATE_IN_CODE] = in_code
        self._state[kernels.STATE_IN_CHANNELS] = src.channels
        self._state[kernels.STATE_OUT_CODE] = out_code
        self._state[kernels.STATE_OUT_CHANNELS] = dst.channels
        self._carry = b""  # a partial input frame, waiting for its other bytes
        if self._decoder is not None:
            self._decoded = self._decoder.pcm.view(np.uint8)  # the kernel reads bytes
        self._xe: np.ndarray
        self._acc: np.ndarray
        self._y: np.ndarray
        self._out: np.ndarray
        self._capacity = 0
        self._grow(in_rate * _INITIAL_MS // 1000)

    @property
    def input_bytes_per_20ms(self) -> int:
        """Bytes of 20 ms of source audio (0 for Opus, whose packets vary)."""
        return self.src.frame_bytes(20)

    @property
    def output_bytes_per_20ms(self) -> int:
        """Bytes of 20 ms of converted audio (0 for Opus, whose packets vary)."""
        return self.dst.frame_bytes(20)

    # --- PCM / G.711 destinations ---------------------------------------------------------------

    def convert(self, data: bytes | bytearray) -> bytes:
        """Convert the next piece of the source stream (or one Opus packet) to ``dst`` bytes."""
        if self._direct and type(data) is bytes and not self._carry:
            # The per-frame path: whole frames of PCM/G.711 that fit the buffers, one kernel call.
            frames, partial = divmod(len(data), self._in_frame_bytes)
            if not partial and frames <= self._capacity:
                n = _transcode(data, frames, self._xe, self._bank, self._state, self._acc,
                               self._y, self._out)
                return self._out[:n].tobytes()
        if self.passthrough:
            return data if type(data) is bytes else bytes(data)
        if self._encoder is not None:
            raise UsageError(_USE_PACKETS)
        n = self._run(data)  # first: it may grow (replace) self._out
        return self._out[:n].tobytes()

    def flush(self) -> bytes:
        """End of utterance: the filter's tail, then a fresh start."""
        if self._encoder is not None:
            raise UsageError(_USE_PACKETS)
        n = self._run_silence(self._filter.history)
        tail = self._out[:n].tobytes()
        self.reset()
        return tail

    def conceal(self, ms: float) -> bytes:
        """Stand-in output for ``ms`` of missing input (silence, or Opus PLC)."""
        if self._encoder is not None:
            raise UsageError(_USE_PACKETS)
        n = self._run_concealment(ms)
        return self._out[:n].tobytes()

    # --- Opus destination -----------------------------------------------------------------------

    def convert_packets(self, data: bytes) -> list[bytes]:
        """Like :meth:`convert`, for an Opus destination: the packets completed by ``data``."""
        if self.passthrough:
            return [data]
        return self._packets(self._run(data))

    def flush_packets(self) -> list[bytes]:
        """End of utterance for an Opus destination: the tail, padded to a whole frame."""
        packets = self._packets(self._run_silence(self._filter.history))
        packets += self._opus_encoder().flush(pad=True)
        self.reset()
        return packets

    def conceal_packets(self, ms: float) -> list[bytes]:
        """Like :meth:`conceal`, for an Opus destination."""
        return self._packets(self._run_concealment(ms))

    # --- stream events --------------------------------------------------------------------------

    def reset(self) -> None:
        """Barge-in: forget the filter history, partial input and any partial Opus frame."""
        self._xe[:] = 0.0
        self._state[kernels.STATE_T] = 0
        self._carry = b""
        if self._encoder is not None:
            self._encoder.reset()
        if self._decoder is not None:
            self._decoder.reset()

    # --- internals ------------------------------------------------------------------------------

    def _run(self, piece: bytes | bytearray) -> int:
        """One fused kernel call on ``piece``; returns the bytes written to ``self._out``."""
        data = piece if isinstance(piece, bytes) else bytes(piece)  # the kernel and libopus take bytes
        if self._decoder is not None:
            frames = self._decoder.decode_into(data)
            source: bytes | np.ndarray = self._decoded
        else:
            if self._carry:
                data, self._carry = self._carry + data, b""
            frames, partial = divmod(len(data), self._in_frame_bytes)
            if partial:
                self._carry = data[len(data) - partial :]
            source = data
        return self._transcode(source, frames)

    def _run_silence(self, frames: int) -> int:
        state = self._state
        code, channels = state[kernels.STATE_IN_CODE], state[kernels.STATE_IN_CHANNELS]
        state[kernels.STATE_IN_CODE], state[kernels.STATE_IN_CHANNELS] = kernels.CODE_SILENCE, 1
        try:
            return self._transcode(b"", frames)
        finally:
            state[kernels.STATE_IN_CODE], state[kernels.STATE_IN_CHANNELS] = code, channels

    def _run_concealment(self, ms: float) -> int:
        if self._decoder is None:
            return self._run_silence(round(self.src.sample_rate * ms / 1000))
        pcm = np.frombuffer(self._decoder.conceal(ms), dtype=np.uint8)
        return self._transcode(pcm, len(pcm) // self._in_frame_bytes)

    def _transcode(self, source: bytes | np.ndarray, frames: int) -> int:
        if frames > self._capacity:
            self._grow(frames)
        return int(_transcode(source, frames, self._xe, self._bank, self._state, self._acc,
                              self._y, self._out))

    def _packets(self, n_bytes: int) -> list[bytes]:
        return self._opus_encoder().encode(self._out[:n_bytes].view(np.int16))

    def _opus_encoder(self) -> OpusEncoder:
        if self._encoder is None:
            raise UsageError(f"the destination is {self.dst}, not opus: use convert(), flush(), "
                             "conceal()")
        return self._encoder

    def _grow(self, frames: int) -> None:
        """Size every buffer for ``frames`` input frames, keeping the filter history."""
        history = self._filter.history
        xe = np.zeros(history + frames * self.src.channels, dtype=np.float32)
        if self._capacity:
            xe[:history] = self._xe[:history]
        self._xe = xe
        self._acc = np.zeros(frames, dtype=np.float32)
        out_frames = frames * self._filter.up // self._filter.down + 2
        self._y = np.zeros(out_frames, dtype=np.float32)
        out_bytes = out_frames * self._out_frame_bytes
        self._out = np.zeros(out_bytes + out_bytes % 2, dtype=np.uint8)  # even: int16 view
        self._capacity = frames
