"""Every numba kernel of the audio path, in one module.

Rules that all kernels follow:

* an explicit signature and ``cache=True``: they compile (or load from ``__pycache__``) when this
  module is imported, never during a call; :func:`warm_up` runs each once more before the server
  reports ready;
* they write into arrays the caller preallocated and return how many items they wrote;
* they trust their arguments: the Python classes around them (:mod:`engine.dsp.resample`,
  :mod:`engine.dsp.transcoder`) validate once at construction and size the buffers. numba does
  not bounds-check, so a too-small output array is memory corruption, not an exception;
* they read samples through ``int()`` (``np.int64()`` for unsigned bytes: numba keeps ``int()``
  of a uint8 unsigned, so ``b - 256`` would wrap) and store in-range values, so that they also
  run unchanged as plain Python under ``NUMBA_DISABLE_JIT=1`` (the CI runs the tests both ways).

Each kernel has a plain-numpy twin in :mod:`engine.dsp.reference` for cross-checking.

Which one to use:

* G.711, 8-bit, byte order and channel kernels: one format step on a whole buffer.
* :func:`resample`: the streaming polyphase filter behind :class:`engine.dsp.resample.Resampler`.
* :func:`transcode`: decode, mix to mono, resample and encode one frame in one call; this is what
  :class:`engine.dsp.transcoder.Transcoder` runs per frame.
"""

from __future__ import annotations

import sys

import numba
import numpy as np
from numba import types as nt

from .g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ALAW_ENCODE_SHIFT,
    MULAW_DECODE,
    MULAW_ENCODE,
    MULAW_ENCODE_SHIFT,
)

# Wire encodings as the fused kernel knows them (see engine.dsp.formats for the names).
CODE_PCM_16_LE = 0
CODE_PCM_16_BE = 1
CODE_PCM_8_U = 2
CODE_PCM_8_S = 3
CODE_MULAW = 4
CODE_ALAW = 5
#: input only: ``n_frames`` of digital silence, whatever the source encoding (flush, conceal).
CODE_SILENCE = 6

_I16 = nt.int16[::1]
_U8 = nt.uint8[::1]
_I8 = nt.int8[::1]
_I64 = nt.int64[::1]
_F32 = nt.float32[::1]
_F32_2D = nt.float32[:, ::1]
_F32_2D_RO = nt.Array(nt.float32, 2, "C", readonly=True)  # filter banks are read-only
_I16_RO = nt.Array(nt.int16, 1, "C", readonly=True)
_U8_RO = nt.Array(nt.uint8, 1, "C", readonly=True)
_I8_RO = nt.Array(nt.int8, 1, "C", readonly=True)
_BYTES = nt.Bytes(nt.uint8, 1, "C", readonly=True)  # a `bytes` object, passed without a copy


# --- G.711 -----------------------------------------------------------------------------------

@numba.njit(nt.int64(_U8_RO, _I16), cache=True)
def mulaw_decode(codes, out):
    """µ-law codes -> int16 samples. Returns the number of samples."""
    for i in range(codes.shape[0]):
        out[i] = MULAW_DECODE[codes[i]]
    return codes.shape[0]


@numba.njit(nt.int64(_U8_RO, _I16), cache=True)
def alaw_decode(codes, out):
    """A-law codes -> int16 samples. Returns the number of samples."""
    for i in range(codes.shape[0]):
        out[i] = ALAW_DECODE[codes[i]]
    return codes.shape[0]


@numba.njit(nt.int64(_I16_RO, _U8), cache=True)
def mulaw_encode(samples, out):
    """int16 samples -> µ-law codes (audioop-exact). Returns the number of codes."""
    for i in range(samples.shape[0]):
        out[i] = MULAW_ENCODE[(int(samples[i]) & 0xFFFF) >> MULAW_ENCODE_SHIFT]
    return samples.shape[0]


@numba.njit(nt.int64(_I16_RO, _U8), cache=True)
def alaw_encode(samples, out):
    """int16 samples -> A-law codes (audioop-exact). Returns the number of codes."""
    for i in range(samples.shape[0]):
        out[i] = ALAW_ENCODE[(int(samples[i]) & 0xFFFF) >> ALAW_ENCODE_SHIFT]
    return samples.shape[0]


# --- linear PCM layouts ------------------------------------------------------------------------

@numba.njit(nt.int64(_I16_RO, _I16), cache=True)
def swap_bytes16(samples, out):
    """Swap the two bytes of every 16-bit sample (big endian <-> little endian)."""
    for i in range(samples.shape[0]):
        v = int(samples[i]) & 0xFFFF
        swapped = ((v & 0xFF) << 8) | (v >> 8)
        out[i] = swapped - 0x10000 if swapped >= 0x8000 else swapped
    return samples.shape[0]


@numba.njit(nt.int64(_U8_RO, _I16), cache=True)
def u8_to_i16(samples, out):
    """Unsigned 8-bit PCM (silence 0x80) -> int16."""
    for i in range(samples.shape[0]):
        out[i] = (int(samples[i]) - 128) << 8
    return samples.shape[0]


@numba.njit(nt.int64(_I16_RO, _U8), cache=True)
def i16_to_u8(samples, out):
    """int16 -> unsigned 8-bit PCM: keeps the high byte (truncates, like audioop)."""
    for i in range(samples.shape[0]):
        out[i] = (int(samples[i]) >> 8) + 128
    return samples.shape[0]


@numba.njit(nt.int64(_I8_RO, _I16), cache=True)
def s8_to_i16(samples, out):
    """Signed 8-bit PCM -> int16."""
    for i in range(samples.shape[0]):
        out[i] = int(samples[i]) << 8
    return samples.shape[0]


@numba.njit(nt.int64(_I16_RO, _I8), cache=True)
def i16_to_s8(samples, out):
    """int16 -> signed 8-bit PCM: keeps the high byte (truncates, like audioop)."""
    for i in range(samples.shape[0]):
        out[i] = int(samples[i]) >> 8
    return samples.shape[0]


@numba.njit(nt.int64(_I16_RO, _I16), cache=True)
def stereo_to_mono(frames, out):
    """Interleaved stereo -> mono, ``floor((left + right) / 2)`` (what audioop.tomono gives)."""
    n = frames.shape[0] // 2
    for i in range(n):
        out[i] = (int(frames[2 * i]) + int(frames[2 * i + 1])) >> 1
    return n


@numba.njit(nt.int64(_I16_RO, _I16), cache=True)
def mono_to_stereo(samples, out):
    """Mono -> interleaved stereo with the same sample on both channels."""
    for i in range(samples.shape[0]):
        out[2 * i] = samples[i]
        out[2 * i + 1] = samples[i]
    return 2 * samples.shape[0]


# --- polyphase resampling ----------------------------------------------------------------------
#
# `xe` is one channel's work buffer: the last K-1 inputs of the previous call, then the new ones.
# The window of the output whose newest input is new sample j is xe[j : j+K]. `t` is where the
# next output sits on the up-sampled grid, counted from the first new input (always 0 at a call
# boundary for integer up-sampling). Filters write float32; rounding happens once, when encoding.

#: layout of the int64 ``state`` array the resampling kernels share with their Python owners.
STATE_T = 0  # next output's position on the up-sampled grid (the only field kernels change)
STATE_DOWN = 1  # decimation factor M of the filter
STATE_IN_CODE = 2  # transcode only: wire encoding and channel count of the input...
STATE_IN_CHANNELS = 3
STATE_OUT_CODE = 4  # ... and of the output
STATE_OUT_CHANNELS = 5
STATE_SIZE = 6


@numba.njit(nt.int64(nt.float32), cache=True)
def _round_int16(value):
    """Round to nearest (ties to even) and saturate to the int16 range."""
    return int(np.rint(min(max(value, np.float32(-32768.0)), np.float32(32767.0))))


@numba.njit(nt.int64(_F32, nt.int64, _F32_2D_RO, _F32, _F32), cache=True)
def _upsample(xe, n_new, bank, acc, y):
    """Integer up-sampling (down == 1): each input yields one output per phase.

    The loops run over outputs innermost, so every multiply-add fills a SIMD lane and no
    horizontal sums are needed; four taps per pass over the accumulator cut its loads and
    stores. Without fastmath the summation order is fixed, so any chunking gives the same bits.
    """
    up, taps = bank.shape
    phase_sum = acc[:n_new]
    for p in range(up):
        coef = bank[p]
        phase_sum[:] = 0.0
        k = 0
        while k + 4 <= taps:
            c0, c1, c2, c3 = coef[k], coef[k + 1], coef[k + 2], coef[k + 3]
            # slice views give contiguous SIMD loads (perf-anchors §2: 4.5× over xe[k + j])
            s0, s1 = xe[k : k + n_new], xe[k + 1 : k + 1 + n_new]
            s2, s3 = xe[k + 2 : k + 2 + n_new], xe[k + 3 : k + 3 + n_new]
            for j in range(n_new):
                phase_sum[j] += (c0 * s0[j] + c1 * s1[j]) + (c2 * s2[j] + c3 * s3[j])
            k += 4
        while k < taps:
            c0, s0 = coef[k], xe[k : k + n_new]
            for j in range(n_new):
                phase_sum[j] += c0 * s0[j]
            k += 1
        for j in range(n_new):
            y[j * up + p] = phase_sum[j]
    return n_new * up


@numba.njit(nt.int64(_F32, nt.int64, _F32_2D_RO, nt.int64, nt.int64, _F32),
            cache=True, fastmath=True)
def _resample_rational(xe, n_new, bank, t, down, y):
    """Any up/down ratio: one dot product of K taps per output.

    fastmath lets LLVM vectorize the dot product; every output runs the same instruction
    sequence over the same K taps, so results do not depend on how the input was chunked.
    """
    up, taps = bank.shape
    step_inputs, step_phase = down // up, down % up
    j, p = t // up, t % up  # the one division per call; the loop steps without dividing
    n = 0
    while j < n_new:
        coef, seg = bank[p], xe[j : j + taps]
        total = np.float32(0.0)
        for k in range(taps):
            total += coef[k] * seg[k]
        y[n] = total
        n += 1
        j += step_inputs
        p += step_phase
        if p >= up:
            p -= up
            j += 1
    return n


@numba.njit(nt.int64(_F32, nt.int64, _F32_2D_RO, nt.int64, nt.int64, _F32, _F32), cache=True)
def _filter(xe, n_new, bank, t, down, acc, y):
    """Filter the ``n_new`` inputs waiting in ``xe`` into ``y``, then keep the last K-1."""
    n = (_upsample(xe, n_new, bank, acc, y) if down == 1  # integer up-sampling: cheaper
         else _resample_rational(xe, n_new, bank, t, down, y))
    for i in range(bank.shape[1] - 1):
        xe[i] = xe[n_new + i]
    return n


@numba.njit(nt.int64(_I16_RO, _F32_2D, _F32_2D_RO, _I64, _F32, _F32, _I16), cache=True)
def resample(frames, history, bank, state, acc, y, out):
    """Resample interleaved int16 ``frames`` (channels = ``history.shape[0]``) into ``out``.

    ``history`` rows are per-channel work buffers of at least ``K - 1 + n_frames`` floats;
    ``acc`` (>= n_frames) and ``y`` (>= output frames) are float32 scratch; ``state`` is laid out
    as ``STATE_*``. Returns the number of output frames; ``out`` must have room for all of them
    (:meth:`engine.dsp.resample.Resampler.output_frames` says how many).
    """
    channels = history.shape[0]
    up, taps = bank.shape
    n_new = frames.shape[0] // channels
    t, down = state[STATE_T], state[STATE_DOWN]
    n_out = 0
    for c in range(channels):
        xe = history[c]
        for i in range(n_new):
            xe[taps - 1 + i] = frames[i * channels + c]
        n_out = _filter(xe, n_new, bank, t, down, acc, y)
        for i in range(n_out):
            out[i * channels + c] = _round_int16(y[i])
    state[STATE_T] = t + n_out * down - n_new * up
    return n_out


# --- the fused per-frame transcoder kernel -----------------------------------------------------

_SRC = (_BYTES, _U8_RO)  # every source reader accepts a `bytes` object or a uint8 array
_NATIVE_PCM16 = CODE_PCM_16_LE if sys.byteorder == "little" else CODE_PCM_16_BE


@numba.njit([nt.int64(s, nt.int64) for s in _SRC], cache=True)
def _read_pcm16_le(src, i):
    v = np.int64(src[2 * i]) | (np.int64(src[2 * i + 1]) << 8)
    return v - ((v >> 15) << 16)


@numba.njit([nt.int64(s, nt.int64) for s in _SRC], cache=True)
def _read_pcm16_be(src, i):
    v = (np.int64(src[2 * i]) << 8) | np.int64(src[2 * i + 1])
    return v - ((v >> 15) << 16)


@numba.njit(nt.int64(nt.int64), cache=True)
def _swap16(v):
    """The int16 whose bytes are those of ``v`` swapped."""
    w = v & 0xFFFF
    s = ((w & 0xFF) << 8) | (w >> 8)
    return s - ((s >> 15) << 16)


@numba.njit([nt.void(s, nt.int64, nt.int64, nt.int64, _F32, nt.int64) for s in _SRC],
            cache=True)
def _decode_mono(src, n_frames, code, channels, dst, offset):
    """Decode ``n_frames`` frames of ``src`` into mono float32 at ``dst[offset:]``.

    Stereo is decoded interleaved, then averaged in place; ``dst`` needs room for both channels.
    """
    n = n_frames * channels
    out = dst[offset : offset + n]
    if code == CODE_PCM_16_LE:
        for i in range(n):
            out[i] = _read_pcm16_le(src, i)
    elif code == CODE_PCM_16_BE:
        for i in range(n):
            out[i] = _read_pcm16_be(src, i)
    elif code == CODE_PCM_8_U:
        for i in range(n):
            out[i] = (np.int64(src[i]) - 128) << 8
    elif code == CODE_PCM_8_S:
        for i in range(n):
            v = np.int64(src[i])
            out[i] = (v - ((v >> 7) << 8)) << 8
    elif code == CODE_MULAW:
        for i in range(n):
            out[i] = MULAW_DECODE[src[i]]
    elif code == CODE_ALAW:
        for i in range(n):
            out[i] = ALAW_DECODE[src[i]]
    else:  # CODE_SILENCE
        out[:] = 0.0
    if channels == 2:  # in place and forwards: frame f reads 2f and 2f+1 >= f
        for f in range(n_frames):
            out[f] = (out[2 * f] + out[2 * f + 1]) * np.float32(0.5)


@numba.njit(nt.int64(_F32, nt.int64, nt.int64, nt.int64, _U8), cache=True)
def _encode(y, n, code, channels, out):
    """Round, saturate and encode ``n`` mono float samples into ``out``, on every channel."""
    if code <= CODE_PCM_16_BE:  # the two 16-bit encodings
        width = 2
        out16 = out.view(np.int16)
        if code == _NATIVE_PCM16:
            for i in range(n):
                out16[i] = _round_int16(y[i])
        else:
            for i in range(n):
                out16[i] = _swap16(_round_int16(y[i]))
        if channels == 2:  # backwards, in place: sample i moves to 2i and 2i+1 >= i
            for i in range(n - 1, -1, -1):
                out16[2 * i + 1] = out16[i]
                out16[2 * i] = out16[i]
    else:
        width = 1
        if code == CODE_PCM_8_U:
            for i in range(n):
                out[i] = (_round_int16(y[i]) >> 8) + 128
        elif code == CODE_PCM_8_S:
            for i in range(n):
                out[i] = (_round_int16(y[i]) >> 8) & 0xFF
        elif code == CODE_MULAW:
            for i in range(n):
                out[i] = MULAW_ENCODE[(_round_int16(y[i]) & 0xFFFF) >> MULAW_ENCODE_SHIFT]
        else:
            for i in range(n):
                out[i] = ALAW_ENCODE[(_round_int16(y[i]) & 0xFFFF) >> ALAW_ENCODE_SHIFT]
        if channels == 2:
            for i in range(n - 1, -1, -1):
                out[2 * i + 1] = out[i]
                out[2 * i] = out[i]
    return n * channels * width


@numba.njit([nt.int64(s, nt.int64, _F32, _F32_2D_RO, _I64, _F32, _F32, _U8) for s in _SRC],
            cache=True)
def transcode(src, n_frames, xe, bank, state, acc, y, out):
    """Decode -> mix to mono -> resample -> encode ``n_frames`` input frames, in one call.

    ``src`` is a ``bytes`` object or a uint8 array holding at least ``n_frames`` whole frames;
    ``state`` carries the filter position and the wire formats (``STATE_*``). ``xe`` is the mono
    work buffer (``K - 1 + n_frames * in_channels`` floats), ``acc`` (>= n_frames) and ``y``
    (>= output frames) float32 scratch, ``out`` room for the encoded output (even length).
    Returns the number of bytes written to ``out``.
    """
    up, taps = bank.shape
    _decode_mono(src, n_frames, state[STATE_IN_CODE], state[STATE_IN_CHANNELS], xe, taps - 1)
    t, down = state[STATE_T], state[STATE_DOWN]
    n = _filter(xe, n_frames, bank, t, down, acc, y)
    state[STATE_T] = t + n * down - n_frames * up
    return _encode(y, n, state[STATE_OUT_CODE], state[STATE_OUT_CHANNELS], out)


def warm_up() -> None:
    """Run every kernel once (the server calls this before it reports ready)."""
    from .filters import design_polyphase

    i16 = np.zeros(16, np.int16)
    u8 = np.zeros(16, np.uint8)
    for kernel, samples, out in (
        (mulaw_decode, u8, i16), (alaw_decode, u8, i16),
        (mulaw_encode, i16, u8), (alaw_encode, i16, u8),
        (swap_bytes16, i16, np.zeros(16, np.int16)), (u8_to_i16, u8, np.zeros(16, np.int16)),
        (i16_to_u8, i16, u8), (s8_to_i16, u8.view(np.int8), np.zeros(16, np.int16)),
        (i16_to_s8, i16, u8.view(np.int8)), (stereo_to_mono, i16, np.zeros(8, np.int16)),
        (mono_to_stereo, i16, np.zeros(32, np.int16)),
    ):
        kernel(samples, out)
    for in_rate, out_rate in ((8000, 24000), (24000, 8000)):
        filt = design_polyphase(in_rate, out_rate)
        frames, out_frames = 16, 16 * filt.up
        history = np.zeros((1, filt.history + frames), np.float32)
        acc, y = np.zeros(frames, np.float32), np.zeros(out_frames, np.float32)
        resample(i16, history, filt.bank, np.array([0, filt.down], np.int64), acc, y,
                 np.zeros(out_frames, np.int16))
        for src, in_code, out_code in ((bytes(32), CODE_PCM_16_LE, CODE_MULAW),
                                       (u8, CODE_MULAW, CODE_PCM_16_LE)):
            state = np.array([0, filt.down, in_code, 1, out_code, 1], np.int64)
            transcode(src, frames, history[0], filt.bank, state, acc, y,
                      np.zeros(2 * out_frames, np.uint8))
