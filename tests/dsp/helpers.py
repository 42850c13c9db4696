"""Shared helpers for the DSP tests: the independent reference (audioop) and signal measures."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():  # audioop warns that it is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    # Python < 3.13 ships audioop; on 3.13+ the audioop-lts package (same C code) provides it
    # under the same name.
    import audioop

__all__ = ["aligned_correlation", "audioop", "fit_amplitudes", "speech_like", "tone"]


def tone(freq: float, rate: int, seconds: float, amplitude: float = 16000.0,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def fit_amplitudes(signal: np.ndarray, rate: int, freqs: list[float]) -> np.ndarray:
    """Least-squares amplitude of each sinusoid in ``freqs`` (fitted jointly, plus DC)."""
    t = np.arange(len(signal)) / rate
    columns = [np.ones_like(t)]
    for f in freqs:
        columns += [np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)]
    coef, *_ = np.linalg.lstsq(np.stack(columns, axis=1), signal.astype(np.float64), rcond=None)
    return np.hypot(coef[1::2], coef[2::2])


def aligned_correlation(reference: np.ndarray, signal: np.ndarray, max_lag: int) -> float:
    """Best normalized correlation of ``signal`` against ``reference`` over lags 0..max_lag."""
    ref = reference.astype(np.float64)
    sig = signal.astype(np.float64)
    best = -1.0
    for lag in range(max_lag + 1):
        n = min(len(ref), len(sig) - lag)
        a, b = ref[:n], sig[lag : lag + n]
        denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
        if denom > 0:
            best = max(best, float(np.dot(a, b) / denom))
    return best


def speech_like(rate: int, seconds: float, peak: float = 12000.0) -> np.ndarray:
    """A voiced, speech-like signal defined analytically, so it can be made at any rate.

    Harmonics of a gliding 110-170 Hz pitch under a two-formant envelope, with a 4 Hz syllable
    rhythm; everything stays below 3.3 kHz, so it survives every conversion, 8 kHz included.
    """
    t = np.arange(round(rate * seconds)) / rate
    pitch_phase = 2 * np.pi * (140.0 * t - 30.0 / (2 * np.pi * 2.0) * np.cos(2 * np.pi * 2.0 * t))
    signal = np.zeros_like(t)
    for k in range(1, 20):
        freq = 140.0 * k
        formants = np.exp(-(((freq - 600.0) / 300.0) ** 2)) + 0.5 * np.exp(
            -(((freq - 1700.0) / 500.0) ** 2))
        signal += (formants + 0.05) * np.sin(k * pitch_phase + k)
    signal *= 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    return peak * signal / np.abs(signal).max()
