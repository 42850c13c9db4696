"""G.711 kernels against CPython's audioop (an independent C implementation), exhaustively."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp import g711, kernels, reference

from .helpers import audioop

ALL_CODES = np.arange(256, dtype=np.uint8)
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)

DECODERS = [
    ("mulaw", kernels.mulaw_decode, reference.mulaw_decode, audioop.ulaw2lin),
    ("alaw", kernels.alaw_decode, reference.alaw_decode, audioop.alaw2lin),
]
ENCODERS = [
    ("mulaw", kernels.mulaw_encode, reference.mulaw_encode, audioop.lin2ulaw),
    ("alaw", kernels.alaw_encode, reference.alaw_encode, audioop.lin2alaw),
]


@pytest.mark.parametrize(("name", "kernel", "twin", "oracle"), DECODERS, ids=lambda v: str(v))
def test_decode_all_256_codes_match_audioop(name, kernel, twin, oracle):
    expected = np.frombuffer(oracle(ALL_CODES.tobytes(), 2), dtype="<i2")
    for implementation in (kernel, twin):
        out = np.zeros(256, np.int16)
        assert implementation(ALL_CODES, out) == 256
        np.testing.assert_array_equal(out, expected, err_msg=f"{name} {implementation}")


@pytest.mark.parametrize(("name", "kernel", "twin", "oracle"), ENCODERS, ids=lambda v: str(v))
def test_encode_all_65536_samples_match_audioop(name, kernel, twin, oracle):
    expected = np.frombuffer(oracle(ALL_SAMPLES.astype("<i2").tobytes(), 2), dtype=np.uint8)
    for implementation in (kernel, twin):
        out = np.zeros(len(ALL_SAMPLES), np.uint8)
        assert implementation(ALL_SAMPLES, out) == len(ALL_SAMPLES)
        mismatches = np.flatnonzero(out != expected)
        first = ALL_SAMPLES[mismatches[:8]]
        assert mismatches.size == 0, f"{name}: first mismatching samples {first}"


def test_silence_codes():
    assert g711.MULAW_DECODE[g711.MULAW_SILENCE] == 0
    assert g711.ALAW_DECODE[g711.ALAW_SILENCE] == 8  # A-law has no zero; 0xD5 is the smallest
    assert audioop.lin2ulaw(b"\0\0", 2) == bytes([g711.MULAW_SILENCE])
    assert audioop.lin2alaw(b"\0\0", 2) == bytes([g711.ALAW_SILENCE])


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        g711.MULAW_ENCODE[0] = 1
