"""Plain-numpy twins of the kernels in :mod:`engine.dsp.kernels`, for tests only.

Each function takes the same arguments, fills the same outputs and returns the same count as its
kernel, written the obvious vectorized way. The G.711 and layout twins must match bit for bit;
the filter twins sum in float64 where the kernels sum in float32, so they may differ by one
least significant bit after rounding.
"""

from __future__ import annotations

import numpy as np

from . import kernels as k
from .g711 import (
    ALAW_DECODE,
    ALAW_ENCODE,
    ALAW_ENCODE_SHIFT,
    MULAW_DECODE,
    MULAW_ENCODE,
    MULAW_ENCODE_SHIFT,
)


def mulaw_decode(codes: np.ndarray, out: np.ndarray) -> int:
    out[: len(codes)] = MULAW_DECODE[codes]
    return len(codes)


def alaw_decode(codes: np.ndarray, out: np.ndarray) -> int:
    out[: len(codes)] = ALAW_DECODE[codes]
    return len(codes)


def mulaw_encode(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = MULAW_ENCODE[samples.view(np.uint16) >> MULAW_ENCODE_SHIFT]
    return len(samples)


def alaw_encode(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = ALAW_ENCODE[samples.view(np.uint16) >> ALAW_ENCODE_SHIFT]
    return len(samples)


def swap_bytes16(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = samples.byteswap()
    return len(samples)


def u8_to_i16(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = (samples.astype(np.int16) - 128) << 8
    return len(samples)


def i16_to_u8(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = ((samples >> 8) + 128).astype(np.uint8)
    return len(samples)


def s8_to_i16(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = samples.astype(np.int16) << 8
    return len(samples)


def i16_to_s8(samples: np.ndarray, out: np.ndarray) -> int:
    out[: len(samples)] = (samples >> 8).astype(np.int8)
    return len(samples)


def stereo_to_mono(frames: np.ndarray, out: np.ndarray) -> int:
    n = len(frames) // 2
    pairs = frames[: 2 * n].astype(np.int32).reshape(n, 2)
    out[:n] = pairs.sum(axis=1) >> 1
    return n


def mono_to_stereo(samples: np.ndarray, out: np.ndarray) -> int:
    out[: 2 * len(samples)] = np.repeat(samples, 2)
    return 2 * len(samples)


def _filter(xe: np.ndarray, n_new: int, bank: np.ndarray, t: int, down: int) -> np.ndarray:
    """Outputs (float64) for the inputs waiting in ``xe``; shifts the history like the kernel."""
    up, taps = bank.shape
    positions = np.arange(t, n_new * up, down)
    newest, phase = positions // up, positions % up
    windows = xe[newest[:, None] + np.arange(taps)].astype(np.float64)
    y = np.einsum("nk,nk->n", bank[phase].astype(np.float64), windows)
    xe[: taps - 1] = xe[n_new : n_new + taps - 1].copy()
    return y


def _round_int16(y: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(y, -32768, 32767)).astype(np.int16)


def resample(frames: np.ndarray, history: np.ndarray, bank: np.ndarray, state: np.ndarray,
             acc: np.ndarray, y: np.ndarray, out: np.ndarray) -> int:
    channels = history.shape[0]
    up, taps = bank.shape
    n_new = len(frames) // channels
    t, down = int(state[k.STATE_T]), int(state[k.STATE_DOWN])
    n_out = 0
    for c in range(channels):
        history[c, taps - 1 : taps - 1 + n_new] = frames[c : n_new * channels : channels]
        filtered = _filter(history[c], n_new, bank, t, down)
        n_out = len(filtered)
        out[c : n_out * channels : channels] = _round_int16(filtered)
    state[k.STATE_T] = t + n_out * down - n_new * up
    return n_out


_DECODERS = {
    k.CODE_PCM_16_LE: lambda b: np.frombuffer(b, "<i2").astype(np.float32),
    k.CODE_PCM_16_BE: lambda b: np.frombuffer(b, ">i2").astype(np.float32),
    k.CODE_PCM_8_U: lambda b: ((np.frombuffer(b, np.uint8).astype(np.int32) - 128) << 8)
    .astype(np.float32),
    k.CODE_PCM_8_S: lambda b: (np.frombuffer(b, np.int8).astype(np.int32) << 8)
    .astype(np.float32),
    k.CODE_MULAW: lambda b: MULAW_DECODE[np.frombuffer(b, np.uint8)].astype(np.float32),
    k.CODE_ALAW: lambda b: ALAW_DECODE[np.frombuffer(b, np.uint8)].astype(np.float32),
}


def _encode(samples: np.ndarray, code: int) -> bytes:
    if code == k.CODE_PCM_16_LE:
        return samples.astype("<i2").tobytes()
    if code == k.CODE_PCM_16_BE:
        return samples.astype(">i2").tobytes()
    if code == k.CODE_PCM_8_U:
        return ((samples >> 8) + 128).astype(np.uint8).tobytes()
    if code == k.CODE_PCM_8_S:
        return (samples >> 8).astype(np.int8).tobytes()
    if code == k.CODE_MULAW:
        return MULAW_ENCODE[samples.view(np.uint16) >> MULAW_ENCODE_SHIFT].tobytes()
    return ALAW_ENCODE[samples.view(np.uint16) >> ALAW_ENCODE_SHIFT].tobytes()


def transcode(src: bytes | np.ndarray, n_frames: int, xe: np.ndarray, bank: np.ndarray,
              state: np.ndarray, acc: np.ndarray, y: np.ndarray, out: np.ndarray) -> int:
    in_code, in_channels = int(state[k.STATE_IN_CODE]), int(state[k.STATE_IN_CHANNELS])
    out_code, out_channels = int(state[k.STATE_OUT_CODE]), int(state[k.STATE_OUT_CHANNELS])
    up, taps = bank.shape
    if in_code == k.CODE_SILENCE:
        mono = np.zeros(n_frames, np.float32)
    else:
        width = 2 if in_code <= k.CODE_PCM_16_BE else 1
        data = bytes(src)[: n_frames * in_channels * width]
        decoded = _DECODERS[in_code](data).reshape(n_frames, in_channels)
        mono = decoded.mean(axis=1, dtype=np.float32)
    xe[taps - 1 : taps - 1 + n_frames] = mono
    t, down = int(state[k.STATE_T]), int(state[k.STATE_DOWN])
    filtered = _filter(xe, n_frames, bank, t, down)
    state[k.STATE_T] = t + len(filtered) * down - n_frames * up
    samples = np.repeat(_round_int16(filtered), out_channels)
    encoded = np.frombuffer(_encode(samples, out_code), np.uint8)
    out[: len(encoded)] = encoded
    return len(encoded)

