"""The streaming resampler: quality (tones), latency, streaming invariants, reset and flush.

Quality is measured on the real streaming ``Resampler`` fed 20 ms frames, with least-squares fits
of the expected sinusoids (input quantization noise averages out of a narrow-band fit, so the
−90 dB limit is measured about 30 dB above the floor).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dsp import kernels, reference
from engine.dsp.filters import PASSBAND_FRACTION, SUPPORTED_RATES, design_polyphase
from engine.dsp.resample import Resampler

from .helpers import fit_amplitudes, tone

PAIRS = [(a, b) for a, b in itertools.permutations(SUPPORTED_RATES, 2)]
TELEPHONE_PAIRS = [(8000, 16000), (16000, 8000), (8000, 24000), (24000, 8000),
                   (8000, 48000), (48000, 8000)]
MATRIX = [pytest.param(a, b, id=f"{a}-{b}") for a, b in PAIRS]
SECONDS = 0.25
SETTLE_MS = 10  # skip the start-up transient (the filter is ≤ 6 ms long) before fitting


def stream(resampler: Resampler, signal: np.ndarray) -> np.ndarray:
    """Feed ``signal`` in 20 ms frames, as a call would."""
    frame = resampler.in_rate // 50
    pcm = np.round(signal).astype(np.int16)
    return np.concatenate([resampler.process(pcm[i : i + frame])
                           for i in range(0, len(pcm), frame)])


def settled(signal: np.ndarray, rate: int) -> np.ndarray:
    return signal[rate * SETTLE_MS // 1000 :]


def passband_edge(in_rate: int, out_rate: int) -> float:
    return PASSBAND_FRACTION * min(in_rate, out_rate)


def spur_frequencies(freq: float, in_rate: int, out_rate: int, up: int) -> list[float]:
    """Where images and aliases of an input tone can appear in the output.

    Up-sampling by ``up`` copies the spectrum to ``k·in_rate ± freq`` (``|k| < up``; ``k = ±up``
    is the up-sampled rate itself); sampling at ``out_rate`` folds everything into
    0 .. out_rate/2. The wanted tone itself is left out.
    """
    found = set()
    for k in range(-up + 1, up):
        for sign in (1, -1):
            f = abs(k * in_rate + sign * freq) % out_rate
            f = min(f, out_rate - f)
            if abs(f - freq) > 1.0 or freq >= out_rate / 2:
                found.add(round(f, 6))
    return sorted(found)


@pytest.mark.parametrize(("in_rate", "out_rate"), MATRIX)
def test_passband_is_flat_within_0_1_db(in_rate, out_rate):
    edge = passband_edge(in_rate, out_rate)
    freqs = list(np.linspace(300.0, edge, 8))
    signal = sum(tone(f, in_rate, SECONDS, amplitude=3000.0, phase=i)
                 for i, f in enumerate(freqs))
    out = settled(stream(Resampler(in_rate, out_rate), signal), out_rate)
    gains_db = 20 * np.log10(fit_amplitudes(out, out_rate, freqs) / 3000.0)
    assert np.all(np.abs(gains_db) <= 0.1), dict(zip(freqs, gains_db.round(4), strict=True))


def rejection_test_tones(in_rate: int, out_rate: int) -> list[float]:
    """Pass-band tones (their images) and, when down-sampling, tones that would alias back."""
    edge = passband_edge(in_rate, out_rate)
    stop = min(in_rate, out_rate) - edge
    tones = [310.0, 1234.5, edge]
    if stop < in_rate / 2:
        tones += [stop, (stop + in_rate / 2) / 2, in_rate / 2 - 123.0]
    return tones


@pytest.mark.parametrize(("in_rate", "out_rate"), MATRIX)
def test_images_and_aliases_into_the_passband_are_below_minus_90_db(in_rate, out_rate):
    up = design_polyphase(in_rate, out_rate).up
    edge = passband_edge(in_rate, out_rate)
    for freq in rejection_test_tones(in_rate, out_rate):
        out = settled(stream(Resampler(in_rate, out_rate), tone(freq, in_rate, SECONDS)),
                      out_rate)
        spurs = [f for f in spur_frequencies(freq, in_rate, out_rate, up) if 0 < f <= edge]
        if not spurs:
            continue
        wanted = [freq] if freq < out_rate / 2 else []
        amplitudes = fit_amplitudes(out, out_rate, wanted + spurs)[len(wanted) :]
        worst = 20 * np.log10(max(amplitudes.max(), 1e-9) / 16000.0)
        assert worst <= -90.0, (freq, spurs[int(np.argmax(amplitudes))], worst)


def group_delays_ms(in_rate: int, out_rate: int) -> np.ndarray:
    """Group delay of the streaming resampler, measured across the pass band.

    For tone pairs 50 Hz apart, the delay is −Δphase / (2π · 50 Hz), from the phases fitted at
    the output (the input tones start at phase 0). This is the delay speech sees; 50 Hz keeps it
    unambiguous up to 20 ms.
    """
    delays = []
    for f in np.linspace(300.0, passband_edge(in_rate, out_rate) - 50.0, 7):
        out = stream(Resampler(in_rate, out_rate),
                     tone(f, in_rate, SECONDS) + tone(f + 50.0, in_rate, SECONDS))
        start = out_rate * SETTLE_MS // 1000
        t = np.arange(start, len(out)) / out_rate
        phases = []
        for freq in (f, f + 50.0):
            basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
            (s, c), *_ = np.linalg.lstsq(basis, out[start:].astype(float), rcond=None)
            phases.append(np.arctan2(c, s))
        step = np.angle(np.exp(1j * (phases[1] - phases[0])))
        delays.append(-step / (2 * np.pi * 50.0) * 1000.0)
    return np.array(delays)


def impulse_peak_ms(in_rate: int, out_rate: int) -> float:
    """Delay of the output's energy peak after a full-scale impulse 10 ms into the stream."""
    x = np.zeros(in_rate // 20)
    x[in_rate // 100] = 32000.0
    out = stream(Resampler(in_rate, out_rate), x).astype(float)
    return float(np.argmax(np.abs(out)) / out_rate * 1000.0 - 10.0)


@pytest.mark.parametrize(("in_rate", "out_rate"), TELEPHONE_PAIRS)
def test_latency_of_telephone_ratios_is_at_most_2_ms(in_rate, out_rate):
    delays = group_delays_ms(in_rate, out_rate)
    assert np.all(delays >= 0.0)
    assert delays.max() <= 2.0, delays
    assert 0.0 <= impulse_peak_ms(in_rate, out_rate) <= 2.0
    assert design_polyphase(in_rate, out_rate).group_delay_ms <= 1.0


@pytest.mark.parametrize(("in_rate", "out_rate"), MATRIX)
def test_every_20_ms_frame_gives_exactly_20_ms_of_output(in_rate, out_rate):
    resampler = Resampler(in_rate, out_rate)
    frame = np.round(tone(440.0, in_rate, 0.02)).astype(np.int16)
    sizes = {len(resampler.process(frame)) for _ in range(5)}
    assert sizes == {out_rate // 50}


@st.composite
def chunked_signals(draw):
    in_rate, out_rate = draw(st.sampled_from(PAIRS))
    length = draw(st.integers(0, 600))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    signal = rng.integers(-20000, 20000, length, dtype=np.int16)
    cuts = sorted(draw(st.lists(st.integers(0, length), max_size=8)))
    return in_rate, out_rate, signal, cuts


@settings(deadline=None, max_examples=40)
@given(chunked_signals())
def test_any_chunking_gives_the_one_shot_output_bit_for_bit(case):
    in_rate, out_rate, signal, cuts = case
    one_shot = Resampler(in_rate, out_rate).process(signal)
    resampler = Resampler(in_rate, out_rate)
    pieces = [resampler.process(chunk) for chunk in np.split(signal, cuts)]
    chunked = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    np.testing.assert_array_equal(chunked, one_shot)


def test_process_into_matches_process_and_checks_room():
    resampler, twin = Resampler(8000, 24000), Resampler(8000, 24000)
    frame = np.round(tone(700.0, 8000, 0.02)).astype(np.int16)
    out = np.zeros(480, np.int16)
    assert resampler.process_into(frame, out) == 480
    np.testing.assert_array_equal(out, twin.process(frame))
    with pytest.raises(ValueError, match="needs 480"):
        resampler.process_into(frame, np.zeros(479, np.int16))


def test_bigger_chunks_than_the_initial_buffers_are_fine():
    signal = np.round(tone(500.0, 48000, 0.1)).astype(np.int16)  # 4800 > 960 samples
    resampler, framed = Resampler(48000, 8000), Resampler(48000, 8000)
    expected = np.concatenate([framed.process(signal[i : i + 960]) for i in range(0, 4800, 960)])
    np.testing.assert_array_equal(resampler.process(signal), expected)


def test_flush_emits_the_tail_then_starts_afresh():
    signal = np.round(tone(1000.0, 8000, 0.1)).astype(np.int16)
    history = design_polyphase(8000, 24000).history
    resampler = Resampler(8000, 24000)
    streamed = np.concatenate([resampler.process(signal[i : i + 160]) for i in range(0, 800, 160)])
    tail = resampler.flush()
    assert len(tail) == 3 * history
    padded = np.concatenate([signal, np.zeros(history, np.int16)])
    np.testing.assert_array_equal(np.concatenate([streamed, tail]),
                                  Resampler(8000, 24000).process(padded))
    np.testing.assert_array_equal(resampler.process(signal[:160]),
                                  Resampler(8000, 24000).process(signal[:160]))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 24000), (44100, 8000)])
def test_reset_drops_state_mid_stream(in_rate, out_rate):
    signal = np.round(tone(900.0, in_rate, 0.05)).astype(np.int16)
    resampler = Resampler(in_rate, out_rate)
    resampler.process(signal[:333])  # leaves a fractional phase and a full history
    resampler.reset()
    np.testing.assert_array_equal(resampler.process(signal),
                                  Resampler(in_rate, out_rate).process(signal))


@pytest.mark.parametrize(("in_rate", "out_rate"), TELEPHONE_PAIRS)
def test_sweep_has_no_clicks_at_frame_boundaries(in_rate, out_rate):
    seconds, top = 0.5, passband_edge(in_rate, out_rate)
    t = np.arange(int(in_rate * seconds)) / in_rate
    sweep = 16000 * np.sin(2 * np.pi * (100 * t + (top - 100) * t**2 / (2 * seconds)))
    chunked = stream(Resampler(in_rate, out_rate), sweep).astype(np.int32)
    one_shot = Resampler(in_rate, out_rate).process(
        np.round(sweep).astype(np.int16)).astype(np.int32)
    assert np.abs(np.diff(chunked)).max() == np.abs(np.diff(one_shot)).max()
    # and no jump beyond the sweep's own steepest slope (plus 1 % and two LSB of rounding)
    steepest = 2 * np.pi * top * 16000 / out_rate
    assert np.abs(np.diff(chunked)).max() <= steepest * 1.01 + 2


def test_stereo_channels_are_resampled_independently():
    left = np.round(tone(500.0, 16000, 0.05)).astype(np.int16)
    right = np.round(tone(2500.0, 16000, 0.05, amplitude=9000.0)).astype(np.int16)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    out = Resampler(16000, 8000, channels=2).process(stereo).reshape(-1, 2)
    np.testing.assert_array_equal(out[:, 0], Resampler(16000, 8000).process(left))
    np.testing.assert_array_equal(out[:, 1], Resampler(16000, 8000).process(right))


@pytest.mark.parametrize(("in_rate", "out_rate"),
                         [(8000, 24000), (24000, 8000), (16000, 24000), (8000, 44100)])
def test_kernel_matches_numpy_twin(in_rate, out_rate):
    filt = design_polyphase(in_rate, out_rate)
    rng = np.random.default_rng(3)
    signal = rng.integers(-30000, 30000, 2 * in_rate // 50, dtype=np.int16)
    states, outputs = [], []
    for implementation in (kernels.resample, reference.resample):
        state = np.zeros(kernels.STATE_SIZE, np.int64)
        state[kernels.STATE_DOWN] = filt.down
        history = np.zeros((1, filt.history + len(signal)), np.float32)
        y = np.zeros(len(signal) * filt.up // filt.down + 2, np.float32)
        pieces = []
        for chunk in np.split(signal, [37, 200, 201, 500]):
            out = np.zeros(len(y), np.int16)
            n = implementation(chunk, history, filt.bank, state, np.zeros(len(chunk), np.float32),
                               y, out)
            pieces.append(out[:n])
        states.append(state.copy())
        outputs.append(np.concatenate(pieces).astype(np.int32))
    np.testing.assert_array_equal(states[0], states[1])
    assert len(outputs[0]) == len(outputs[1])
    assert np.abs(outputs[0] - outputs[1]).max() <= 1
    assert np.mean(outputs[0] == outputs[1]) > 0.99


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unsupported sample rate 11025"):
        Resampler(11025, 8000)
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        Resampler(8000, 16000, channels=3)


def test_same_rate_is_the_identity():
    signal = np.random.default_rng(5).integers(-32768, 32768, 999, dtype=np.int16)
    np.testing.assert_array_equal(Resampler(16000, 16000).process(signal), signal)
