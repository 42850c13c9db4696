"""Low-delay anti-alias / anti-image filters for the polyphase resampler, designed in numpy.

One filter per rate pair, designed once and cached (:func:`design_polyphase`):

* a Kaiser-windowed sinc low-pass at the up-sampled rate ``in_rate * L``, cut off at the lower
  Nyquist, with the pass band ending at 0.85 × the lower Nyquist (3.4 kHz when 8 kHz is involved)
  and the stop band starting where an alias or image would land back in that pass band
  (4.6 kHz for 8 kHz pairs), attenuated by about 96 dB;
* turned into its minimum-phase twin by the cepstral (homomorphic) method. The magnitude response
  is unchanged (pass band flat to ±0.001 dB), but the energy moves to the start of the filter:
  the pass-band group delay drops from 2.6 ms (linear phase) to 0.3-0.8 ms at 8 kHz. The price
  is a group delay that is not constant over the band, which speech does not mind;
* split into ``L`` phases of ``K`` taps each, stored reversed so that the kernels compute a
  forward dot product over the last ``K`` inputs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedAudio

#: every rate the resampler supports; any pair among them works.
SUPPORTED_RATES = (8000, 12000, 16000, 24000, 44100, 48000)

#: pass band edge and stop band start as fractions of the lower of the two rates.
PASSBAND_FRACTION = 0.425  # 0.85 × Nyquist
STOPBAND_FRACTION = 1.0 - PASSBAND_FRACTION  # first frequency that folds back into the pass band
#: Kaiser design target; the minimum-phase result keeps about 95 dB.
DESIGN_ATTENUATION_DB = 96.0
#: the rational kernel computes one dot product per output; a multiple of 8 taps vectorizes
#: without a scalar tail. The integer up-sampling kernel gains nothing from padding.
RATIONAL_TAP_MULTIPLE = 8


@dataclass(frozen=True, eq=False)
class PolyphaseFilter:
    """A resampling filter, ready for :func:`engine.dsp.kernels.resample`.

    Output ``n`` sits at ``n * down`` on a grid where input ``j`` sits at ``j * up``; its phase
    ``p = (n * down) % up`` selects the row ``bank[p]``, which is dotted with the ``K`` inputs
    ending at ``j = (n * down) // up``.
    """

    in_rate: int
    out_rate: int
    up: int
    down: int
    bank: np.ndarray  # (up, K) float32, read-only
    passband_hz: float
    stopband_hz: float
    group_delay_ms: float  # median over 300 Hz .. pass band edge

    @property
    def taps_per_phase(self) -> int:
        return int(self.bank.shape[1])

    @property
    def history(self) -> int:
        """Input samples the filter remembers between calls (``K - 1``)."""
        return self.taps_per_phase - 1


def kaiser_lowpass(num_taps: int, cutoff: float, attenuation_db: float) -> np.ndarray:
    """Linear-phase windowed-sinc low-pass; ``cutoff`` is a fraction of the sample rate."""
    beta = 0.1102 * (attenuation_db - 8.7)  # Kaiser's formula for A > 50 dB
    n = np.arange(num_taps) - (num_taps - 1) / 2.0
    return 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(num_taps, beta)


def minimum_phase(h: np.ndarray) -> np.ndarray:
    """The minimum-phase filter with the same magnitude response as ``h`` and the same length.

    Homomorphic method: fold the real cepstrum of ``log|H|`` onto positive quefrencies. The FFT
    is 16× the filter length, so cepstral aliasing stays far below the stop band.
    """
    nfft = 1 << max(14, math.ceil(math.log2(16 * len(h))))
    magnitude = np.abs(np.fft.rfft(h, nfft))
    log_magnitude = np.log(np.maximum(magnitude, 1e-14 * magnitude.max()))  # stop-band zeros
    cepstrum = np.fft.irfft(log_magnitude, nfft)
    folded = np.zeros(nfft)
    folded[0] = cepstrum[0]
    folded[1 : nfft // 2] = 2.0 * cepstrum[1 : nfft // 2]
    folded[nfft // 2] = cepstrum[nfft // 2]
    return np.fft.irfft(np.exp(np.fft.rfft(folded)), nfft)[: len(h)]


def _median_group_delay_ms(h: np.ndarray, rate: float, low_hz: float, high_hz: float) -> float:
    nfft = 1 << max(16, math.ceil(math.log2(8 * len(h))))
    response = np.fft.rfft(h, nfft)
    freqs = np.arange(len(response)) * rate / nfft
    phase = np.unwrap(np.angle(response))
    delay = -np.gradient(phase, 2.0 * np.pi * freqs / rate)  # in samples at `rate`
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.median(delay[band]) / rate * 1000.0)


@functools.cache
def design_polyphase(in_rate: int, out_rate: int) -> PolyphaseFilter:
    """Design (once per process) the filter converting ``in_rate`` to ``out_rate``."""
    for rate in (in_rate, out_rate):
        if rate not in SUPPORTED_RATES:
            raise UnsupportedAudio(f"unsupported sample rate {rate}; supported: {SUPPORTED_RATES}")
    common = math.gcd(in_rate, out_rate)
    up, down = out_rate // common, in_rate // common
    low_rate = min(in_rate, out_rate)
    passband = PASSBAND_FRACTION * low_rate
    stopband = STOPBAND_FRACTION * low_rate
    if up == down == 1:
        bank = np.ones((1, 1), dtype=np.float32)
        bank.flags.writeable = False
        return PolyphaseFilter(in_rate, out_rate, 1, 1, bank, passband, stopband, 0.0)

    design_rate = in_rate * up
    transition = 2.0 * np.pi * (stopband - passband) / design_rate
    num_taps = math.ceil((DESIGN_ATTENUATION_DB - 7.95) / (2.285 * transition)) + 1
    taps_per_phase = -(-num_taps // up)
    if down != 1:
        taps_per_phase = -(-taps_per_phase // RATIONAL_TAP_MULTIPLE) * RATIONAL_TAP_MULTIPLE
    prototype = kaiser_lowpass(taps_per_phase * up, 0.5 * low_rate / design_rate,
                               DESIGN_ATTENUATION_DB)
    h = minimum_phase(prototype) * up  # × up restores the level lost to zero-stuffing
    # bank[p, k] = h[p + (K-1-k)·up]: row p is phase p, oldest input first.
    bank = np.ascontiguousarray(h.reshape(taps_per_phase, up)[::-1].T, dtype=np.float32)
    bank.flags.writeable = False
    delay = _median_group_delay_ms(h, design_rate, 300.0, passband)
    return PolyphaseFilter(in_rate, out_rate, up, down, bank, passband, stopband, delay)
