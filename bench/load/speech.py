"""Speech for the load test: espeak-ng when the machine has it, else a speech-like signal.

Real speech matters little to the bridge's CPU (it never looks at the content) but it keeps the
audio honest for the correlation checks; the report says which source was used.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

TEXT = (
    "Thank you for calling. Please tell me how I can help you today, "
    "and I will do my best to answer your question quickly."
)


def espeak(rate: int = 8000) -> np.ndarray | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        result = subprocess.run([exe, "-w", str(path), TEXT], capture_output=True, check=False)
        if result.returncode != 0 or not path.exists():
            return None
        with wave.open(str(path)) as wav:
            source_rate = wav.getframerate()
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    if source_rate != rate:
        # espeak-ng speaks at 22.05 kHz, which callbridge itself never needs; scipy does it here.
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(source_rate, rate)
        data = resample_poly(data, rate // common, source_rate // common)
    return np.clip(data, -32768, 32767).astype(np.int16)


def synthetic(seconds: float = 6.0, rate: int = 8000) -> np.ndarray:
    """Voiced segments with formant-like harmonics, unvoiced noise and pauses."""
    rng = np.random.default_rng(11)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = (np.sin(2 * np.pi * 3.5 * t) > -0.2).astype(float)
    noise = rng.normal(0, 0.3, len(t)) * (np.sin(2 * np.pi * 1.1 * t) > 0.8)
    pauses = (np.sin(2 * np.pi * 0.25 * t) > -0.7).astype(float)
    signal = (voiced * syllables + noise) * pauses
    return (signal / np.max(np.abs(signal)) * 12000).astype(np.int16)


def speech(rate: int = 8000) -> tuple[np.ndarray, str]:
    """(int16 samples at ``rate``, a label of where they came from)."""
    spoken = espeak(rate)
    if spoken is not None and len(spoken) > rate:
        return spoken, "espeak-ng"
    return synthetic(rate=rate), "synthetic speech-like signal (espeak-ng not installed)"
