"""Opus for one call leg and direction, on libopus through opuslib's loaded library.

* :class:`OpusEncoder` takes int16 PCM in pieces of any size, cuts it into frames of the declared
  duration (keeping the remainder for the next call) and returns one packet per frame.
* :class:`OpusDecoder` turns one packet into int16 PCM, and fills a missing packet with libopus
  packet-loss concealment (:meth:`OpusDecoder.conceal`), or with the forward error correction
  data of the packet that follows it when there is one.

opuslib creates and frees the codec states; the per-frame calls go straight to ``opus_encode`` /
``opus_decode`` with preallocated buffers, because opuslib allocates a ctypes buffer and a Python
list per call, which doubles the cost of a decode (perf-anchors §3). Any libopus failure becomes a
:class:`~engine.errors.CodecError` naming the call, the leg and the frame index.

PCM is native-endian int16 (little endian on every platform callbridge runs on), interleaved when
stereo.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import opuslib
import opuslib.api
import opuslib.api.encoder
from opuslib.api import ctl

from ..errors import CodecError, UnsupportedAudio, UsageError
from .formats import OPUS_FRAME_TENTHS_MS, OPUS_RATES

__all__ = ["OPUS_FRAME_MS", "OpusDecoder", "OpusEncoder"]

#: frame durations libopus accepts, in milliseconds.
OPUS_FRAME_MS = tuple(tenths / 10 for tenths in OPUS_FRAME_TENTHS_MS)
_MAX_PACKET_MS = 120  # the longest packet Opus allows (several frames)
_MAX_PACKET_BYTES = 4000  # the size libopus recommends for an encoder's output buffer
_APPLICATIONS = ("voip", "audio", "restricted_lowdelay")


def _libopus_function(name: str, restype: type, *argtypes: type) -> Any:
    # A fresh function object, so that our argtypes do not change opuslib's own bindings.
    function = opuslib.api.libopus[name]
    function.restype = restype
    function.argtypes = argtypes
    return function


_opus_encode = _libopus_function("opus_encode", ctypes.c_int32, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32)
_opus_decode = _libopus_function("opus_decode", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.c_int32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
_opus_strerror = _libopus_function("opus_strerror", ctypes.c_char_p, ctypes.c_int)


def _describe(code: int) -> str:
    return (_opus_strerror(code) or b"unknown error").decode().lower()


def _address(state: object) -> int:
    return ctypes.cast(state, ctypes.c_void_p).value or 0  # type: ignore[arg-type]


def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate not in OPUS_RATES:
        raise UnsupportedAudio(f"opus cannot run at {sample_rate} Hz; it supports {OPUS_RATES}")
    if channels not in (1, 2):
        raise UnsupportedAudio(f"opus supports 1 or 2 channels, not {channels!r}")


class OpusEncoder:
    """Encode int16 PCM into Opus packets of exactly ``frame_ms`` each.

    ``bitrate`` is in bit/s (``None`` lets libopus choose); ``complexity`` trades CPU for quality
    (0-10: c10 costs about 4× c0 per frame; 5 is a good default for speech); ``inband_fec`` with
    ``packet_loss_pct`` adds redundancy the far end's :meth:`OpusDecoder.conceal` can use.
    """

    def __init__(self, sample_rate: int, channels: int = 1, frame_ms: float = 20, *,
                 application: str = "voip", bitrate: int | None = None, complexity: int = 5,
                 inband_fec: bool = False, packet_loss_pct: int = 0,
                 call_id: str = "", leg: str = "") -> None:
        _check_format(sample_rate, channels)
        if frame_ms not in OPUS_FRAME_MS:
            raise UsageError(f"opus frames last {OPUS_FRAME_MS} ms, not {frame_ms!r}")
        if application not in _APPLICATIONS:
            raise UsageError(f"opus application must be one of {_APPLICATIONS}, "
                             f"not {application!r}")
        if not 0 <= complexity <= 10:
            raise UsageError(f"opus complexity runs from 0 to 10, not {complexity!r}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = frame_ms
        self.frame_samples = round(sample_rate * frame_ms / 1000)  # per channel
        self.call_id = call_id
        self.leg = leg
        try:
            self._codec = opuslib.Encoder(sample_rate, channels, application)
            settings = [(ctl.set_complexity, complexity), (ctl.set_inband_fec, int(inband_fec)),
                        (ctl.set_packet_loss_perc, packet_loss_pct)]
            if bitrate is not None:
                settings.append((ctl.set_bitrate, bitrate))
            for request, value in settings:  # opuslib's inband_fec property is broken in 3.0.1
                opuslib.api.encoder.encoder_ctl(self._codec.encoder_state, request, value)
        except opuslib.OpusError as error:
            raise UsageError(f"opus encoder setup failed: {error}") from error
        self._state = _address(self._codec.encoder_state)
        self._frame = np.zeros(self.frame_samples * channels, dtype=np.int16)
        self._frame_address = self._frame.ctypes.data
        self._filled = 0  # samples of the next frame already collected
        self._packet = ctypes.create_string_buffer(_MAX_PACKET_BYTES)
        self._frames = 0

    @property
    def pending_samples(self) -> int:
        """Samples (per channel) waiting for the rest of their frame."""
        return self._filled // self.channels

    def encode(self, pcm: bytes | np.ndarray) -> list[bytes]:
        """Add int16 PCM (bytes or array, whole samples) and return every packet completed."""
        samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes | bytearray) \
            else np.ascontiguousarray(pcm, dtype=np.int16)
        packets = []
        size, position = len(self._frame), 0
        while position < len(samples):
            take = min(size - self._filled, len(samples) - position)
            self._frame[self._filled : self._filled + take] = samples[position : position + take]
            self._filled += take
            position += take
            if self._filled == size:
                packets.append(self._encode_frame())
        return packets

    def flush(self, pad: bool = True) -> list[bytes]:
        """End of stream: encode the partial frame padded with silence (or drop it)."""
        if not self._filled:
            return []
        if not pad:
            self._filled = 0
            return []
        self._frame[self._filled :] = 0
        return [self._encode_frame()]

    def reset(self) -> None:
        """Drop the partial frame and the encoder's memory (barge-in)."""
        self._filled = 0
        self._codec.reset_state()

    def _encode_frame(self) -> bytes:
        self._filled = 0
        length = _opus_encode(self._state, self._frame_address, self.frame_samples,
                              self._packet, _MAX_PACKET_BYTES)
        frame, self._frames = self._frames, self._frames + 1
        if length < 0:
            raise CodecError(f"opus encode failed: {_describe(length)}", call_id=self.call_id,
                             leg=self.leg, frame=frame)
        return self._packet.raw[:length]


class OpusDecoder:
    """Decode Opus packets into int16 PCM, concealing lost packets."""

    def __init__(self, sample_rate: int, channels: int = 1, *,
                 call_id: str = "", leg: str = "") -> None:
        _check_format(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self.call_id = call_id
        self.leg = leg
        try:
            self._codec = opuslib.Decoder(sample_rate, channels)
        except opuslib.OpusError as error:
            raise UsageError(f"opus decoder setup failed: {error}") from error
        self._state = _address(self._codec.decoder_state)
        self._max_samples = sample_rate * _MAX_PACKET_MS // 1000
        #: the decoded PCM of the last call; valid until the next one.
        self.pcm = np.zeros(self._max_samples * channels, dtype=np.int16)
        self._pcm_address = self.pcm.ctypes.data
        self._frames = 0

    def decode(self, packet: bytes) -> bytes:
        """Decode one packet into int16 PCM bytes."""
        return self.pcm[: self.decode_into(packet) * self.channels].tobytes()

    def decode_into(self, packet: bytes) -> int:
        """Decode one packet into :attr:`pcm`; returns the samples per channel."""
        return self._run(packet, len(packet), self._max_samples, 0)

    def conceal(self, duration_ms: float, next_packet: bytes | None = None) -> bytes:
        """PCM standing in for ``duration_ms`` of lost packets.

        Without ``next_packet`` this is libopus packet-loss concealment (it continues the voice
        and fades out over long gaps). With the packet that follows the gap, the end of the gap
        is rebuilt from that packet's forward error correction data, if the sender included it.
        """
        samples = self._concealed_samples(duration_ms)
        pieces = []
        step = self.sample_rate // 50  # conceal in 20 ms steps, so any gap length works
        while samples > 0:
            size = min(step, samples)
            samples -= size
            fec = next_packet if (samples == 0 and next_packet) else None
            n = self._run(fec, len(fec) if fec else 0, size, 1 if fec else 0)
            pieces.append(self.pcm[: n * self.channels].tobytes())
        return b"".join(pieces)

    def reset(self) -> None:
        """Forget the decoder's memory (a new talk spurt or stream)."""
        self._codec.reset_state()

    def _concealed_samples(self, duration_ms: float) -> int:
        tenths = duration_ms * 10
        if duration_ms <= 0 or tenths != int(tenths) or int(tenths) % 25:
            raise UsageError(f"opus conceals whole multiples of 2.5 ms, not {duration_ms!r} ms")
        return int(tenths) * self.sample_rate // 10000

    def _run(self, data: bytes | None, length: int, samples: int, fec: int) -> int:
        n = _opus_decode(self._state, data, length, self._pcm_address, samples, fec)
        frame, self._frames = self._frames, self._frames + 1
        if n < 0:
            raise CodecError(f"opus decode failed: {_describe(n)}", call_id=self.call_id,
                             leg=self.leg, frame=frame)
        return int(n)
