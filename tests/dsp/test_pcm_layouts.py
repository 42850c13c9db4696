"""Byte order, 8-bit and channel kernels against audioop and their numpy twins."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp import kernels, reference

from .helpers import audioop

RNG = np.random.default_rng(7)
SAMPLES = np.concatenate([
    np.array([-32768, -32767, -257, -256, -255, -129, -128, -1, 0, 1, 127, 128, 255, 256, 32767],
             dtype=np.int16),
    RNG.integers(-32768, 32768, 4001, dtype=np.int16),
])
BYTES8 = np.arange(256, dtype=np.uint8)


def run(function, src, out_dtype, out_len):
    out = np.zeros(out_len, out_dtype)
    n = function(src, out)
    return out[:n]


@pytest.mark.parametrize("implementation", [kernels.swap_bytes16, reference.swap_bytes16])
def test_swap_bytes16_matches_audioop_byteswap(implementation):
    swapped = run(implementation, SAMPLES, np.int16, len(SAMPLES))
    expected = np.frombuffer(audioop.byteswap(SAMPLES.tobytes(), 2), dtype=np.int16)
    np.testing.assert_array_equal(swapped, expected)
    np.testing.assert_array_equal(run(implementation, swapped, np.int16, len(SAMPLES)), SAMPLES)


@pytest.mark.parametrize("implementation", [kernels.i16_to_s8, reference.i16_to_s8])
def test_i16_to_signed8_matches_audioop_lin2lin(implementation):
    expected = np.frombuffer(audioop.lin2lin(SAMPLES.tobytes(), 2, 1), dtype=np.int8)
    np.testing.assert_array_equal(run(implementation, SAMPLES, np.int8, len(SAMPLES)), expected)


@pytest.mark.parametrize("implementation", [kernels.s8_to_i16, reference.s8_to_i16])
def test_signed8_to_i16_matches_audioop_lin2lin(implementation):
    src = BYTES8.view(np.int8)
    expected = np.frombuffer(audioop.lin2lin(src.tobytes(), 1, 2), dtype=np.int16)
    np.testing.assert_array_equal(run(implementation, src, np.int16, 256), expected)


@pytest.mark.parametrize("implementation", [kernels.i16_to_u8, reference.i16_to_u8])
def test_i16_to_unsigned8_matches_audioop_lin2lin_and_bias(implementation):
    signed = audioop.lin2lin(SAMPLES.tobytes(), 2, 1)
    expected = np.frombuffer(audioop.bias(signed, 1, 128), dtype=np.uint8)
    np.testing.assert_array_equal(run(implementation, SAMPLES, np.uint8, len(SAMPLES)), expected)


@pytest.mark.parametrize("implementation", [kernels.u8_to_i16, reference.u8_to_i16])
def test_unsigned8_to_i16_matches_audioop_bias_and_lin2lin(implementation):
    signed = audioop.bias(BYTES8.tobytes(), 1, -128)
    expected = np.frombuffer(audioop.lin2lin(signed, 1, 2), dtype=np.int16)
    np.testing.assert_array_equal(run(implementation, BYTES8, np.int16, 256), expected)


@pytest.mark.parametrize("implementation", [kernels.stereo_to_mono, reference.stereo_to_mono])
def test_stereo_to_mono_matches_audioop_tomono(implementation):
    expected = np.frombuffer(audioop.tomono(SAMPLES[:4000].tobytes(), 2, 0.5, 0.5), np.int16)
    np.testing.assert_array_equal(run(implementation, SAMPLES[:4000], np.int16, 2000), expected)


@pytest.mark.parametrize("implementation", [kernels.mono_to_stereo, reference.mono_to_stereo])
def test_mono_to_stereo_matches_audioop_tostereo(implementation):
    expected = np.frombuffer(audioop.tostereo(SAMPLES.tobytes(), 2, 1, 1), np.int16)
    np.testing.assert_array_equal(
        run(implementation, SAMPLES, np.int16, 2 * len(SAMPLES)), expected)


def test_kernels_accept_empty_input():
    assert kernels.mulaw_encode(np.zeros(0, np.int16), np.zeros(0, np.uint8)) == 0
    assert kernels.stereo_to_mono(np.zeros(1, np.int16), np.zeros(0, np.int16)) == 0
