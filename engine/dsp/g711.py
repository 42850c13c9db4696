"""G.711 µ-law and A-law lookup tables, built in numpy from the ITU-T G.711 algorithm.

The tables reproduce the classic Sun/CCITT reference code (the one CPython's ``audioop`` uses)
bit for bit: decoding is a 256-entry ``int16`` table, and encoding is a table indexed by the
top bits of the sample, because the µ-law encoder only looks at 14 bits (``uint16(x) >> 2``,
16 KiB) and the A-law encoder at 13 bits (``uint16(x) >> 3``, 8 KiB). The numba kernels in
:mod:`engine.dsp.kernels` and their numpy twins in :mod:`engine.dsp.reference` both read these.

Silence is ``0xFF`` in µ-law (decodes to 0) and ``0xD5`` in A-law (decodes to +8: A-law has no
code for zero).
"""

from __future__ import annotations

import numpy as np

MULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

#: right shift that turns an ``int16`` (as ``uint16``) into an encode-table index.
MULAW_ENCODE_SHIFT = 2
ALAW_ENCODE_SHIFT = 3

_QUANT_MASK = 0x0F
_SEG_MASK = 0x70
_SEG_SHIFT = 4
_SIGN_BIT = 0x80
_MULAW_BIAS = 0x84
_MULAW_CLIP = 8159  # largest 14-bit magnitude µ-law represents
# Upper end of each segment, on the scaled magnitudes the encoders work on.
_MULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _signed(index: np.ndarray, bits: int) -> np.ndarray:
    """Read ``index`` (0 .. 2**bits - 1) as a two's-complement number of ``bits`` bits."""
    return np.where(index >= 1 << (bits - 1), index - (1 << bits), index)


def _mulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int64) & 0xFF  # µ-law stores every bit inverted
    t = (((u & _QUANT_MASK) << 3) + _MULAW_BIAS) << ((u & _SEG_MASK) >> _SEG_SHIFT)
    return np.where(u & _SIGN_BIT, _MULAW_BIAS - t, t - _MULAW_BIAS).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int64) ^ 0x55  # A-law inverts the even bits
    t = (a & _QUANT_MASK) << 4
    seg = (a & _SEG_MASK) >> _SEG_SHIFT
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & _SIGN_BIT, t, -t).astype(np.int16)


def _mulaw_encode_table() -> np.ndarray:
    pcm14 = _signed(np.arange(1 << 14, dtype=np.int64), 14)
    mask = np.where(pcm14 < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm14), _MULAW_CLIP) + (_MULAW_BIAS >> 2)
    seg = np.searchsorted(_MULAW_SEGMENT_ENDS, magnitude, side="left")
    code = (np.minimum(seg, 7) << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & _QUANT_MASK)
    return np.where(seg >= 8, 0x7F ^ mask, code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm13 = _signed(np.arange(1 << 13, dtype=np.int64), 13)
    mask = np.where(pcm13 >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm13 >= 0, pcm13, -pcm13 - 1)
    seg = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude, side="left")
    mantissa = np.where(seg < 2, magnitude >> 1, magnitude >> np.minimum(seg, 7)) & _QUANT_MASK
    code = (np.minimum(seg, 7) << _SEG_SHIFT) | mantissa
    return np.where(seg >= 8, 0x7F ^ mask, code ^ mask).astype(np.uint8)


#: code (0..255) -> int16 sample.
MULAW_DECODE = _mulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
#: ``uint16(sample) >> MULAW_ENCODE_SHIFT`` -> code, and the A-law equivalent.
MULAW_ENCODE = _mulaw_encode_table()
ALAW_ENCODE = _alaw_encode_table()

for _table in (MULAW_DECODE, ALAW_DECODE, MULAW_ENCODE, ALAW_ENCODE):
    _table.flags.writeable = False
