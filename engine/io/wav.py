"""16-bit WAV files and test signals, for ``callbridge call`` and the integration tests.

:func:`read_wav` gives mono int16 samples and the rate (stereo is mixed down);
:func:`write_wav` writes mono int16. :func:`speechlike` is the built-in caller signal when no
WAV is given: a voiced 4 Hz-syllable buzz with formant-like harmonics, so it exercises the
audio path like speech does (not just one sine). :func:`best_correlation` is how tests and
the summary compare what went in with what came back.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from engine.errors import UsageError


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file as ``(mono int16 samples, rate)``, mixing stereo down.

    Raises :exc:`~engine.errors.UsageError` for a file that cannot be read or is not 16-bit.
    """
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            raw = w.readframes(frames)
    except (OSError, wave.Error, EOFError) as exc:
        raise UsageError(f"{path}: cannot read WAV: {exc}") from None
    if width != 2:
        raise UsageError(f"{path}: {8 * width}-bit WAV; callbridge call reads 16-bit PCM WAV")
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
    mono = (
        samples[:, 0] if channels == 1 else samples.astype(np.int32).mean(axis=1).astype(np.int16)
    )
    return np.ascontiguousarray(mono, dtype=np.int16), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono int16 ``samples`` at ``rate`` Hz as a 16-bit WAV file (raises
    :exc:`~engine.errors.UsageError` when it cannot be written)."""
    try:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    except OSError as exc:
        raise UsageError(f"{path}: cannot write WAV: {exc.strerror or exc}") from None


def tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    """A sine of ``freq`` Hz as int16 samples: the simplest signal to check a path end to end."""
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def speechlike(rate: int, seconds: float = 3.0, f0: float = 140.0) -> np.ndarray:
    """The built-in caller: int16 samples of a voiced buzz around ``f0`` Hz, four syllables a
    second (see the module docstring); use it where a test needs speech, not a sine."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))  # slow intonation
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(
        np.sin(k * phase) * g
        for k, g in ((1, 1.0), (2, 0.6), (3, 0.5), (5, 0.35), (8, 0.2), (13, 0.1))
    )
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = voice * syllables
    return (7000.0 * signal / np.max(np.abs(signal))).astype(np.int16)


def best_correlation(
    reference: np.ndarray, received: np.ndarray, max_lag: int
) -> tuple[float, int]:
    """The highest normalised cross-correlation of ``received`` against ``reference`` over lags
    ``0..max_lag`` (received delayed), on their overlap; returns ``(correlation, lag)``."""
    ref = reference.astype(np.float64)
    got = received.astype(np.float64)
    best, best_lag = 0.0, 0
    for lag in range(0, max_lag + 1):
        n = min(len(ref), len(got) - lag)
        if n <= 0:
            break
        a, b = ref[:n], got[lag : lag + n]
        denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
        if denom == 0:
            continue
        c = float(np.dot(a, b) / denom)
        if c > best:
            best, best_lag = c, lag
    return best, best_lag
