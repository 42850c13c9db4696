"""Streaming sample-rate conversion for int16 audio: :class:`Resampler`.

Use one ``Resampler`` per call, direction and rate pair (state is carried between calls):

* :meth:`Resampler.process` for each chunk as it arrives. Any chunking gives exactly the bits a
  single call on the whole signal would give, and a 20 ms input frame always yields exactly
  20 ms of output (160 samples at 8 kHz in -> 480 at 24 kHz out, every call): nothing is held
  back, so there are no empty outputs and no bursts.
* :meth:`Resampler.process_into` does the same into your own array (no allocation).
* :meth:`Resampler.flush` at the end of an utterance: it emits the filter's ringing tail and
  starts afresh. :meth:`Resampler.reset` on barge-in / ``clear``: it drops the tail.

Neither is ever called on a timer: the resampler has no clock (see peers.md §2 items 2-4).

Rates: any pair among :data:`SUPPORTED_RATES` (8, 12, 16, 24, 44.1 and 48 kHz). The filter (see
:mod:`engine.dsp.filters`) is flat to ±0.1 dB up to 0.85 × the lower Nyquist, rejects everything
that would alias or image into that band by more than 90 dB, and is minimum phase, so the delay
is 0.3-0.8 ms for the telephone ratios rather than the 2.6 ms of a linear-phase design.

Stereo (``channels=2``) resamples each channel separately; to mix to mono, use the transcoder.
"""

from __future__ import annotations

import numpy as np

from ..errors import BufferTooSmall, UnsupportedAudio
from . import kernels
from .filters import SUPPORTED_RATES, PolyphaseFilter, design_polyphase

__all__ = ["SUPPORTED_RATES", "Resampler"]

_INITIAL_CAPACITY = 960  # input frames; 20 ms at 48 kHz. Grows if a bigger chunk arrives.


class Resampler:
    """Stateful polyphase resampler from ``in_rate`` to ``out_rate`` for int16 samples."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1) -> None:
        if channels not in (1, 2):
            raise UnsupportedAudio(f"channels must be 1 or 2, not {channels!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self.filter: PolyphaseFilter = design_polyphase(in_rate, out_rate)  # validates rates
        self._bank = self.filter.bank
        self._up = self.filter.up
        self._down = self.filter.down
        self._state = np.zeros(kernels.STATE_SIZE, dtype=np.int64)
        self._state[kernels.STATE_DOWN] = self._down
        self._flush_input = np.zeros(self.filter.history * channels, dtype=np.int16)
        self._history: np.ndarray  # (channels, K - 1 + capacity) float32, sized by _grow
        self._acc: np.ndarray
        self._filtered: np.ndarray
        self._capacity = 0
        self._grow(_INITIAL_CAPACITY)

    @property
    def delay_ms(self) -> float:
        """Median group delay of the filter over 300 Hz .. pass band edge."""
        return self.filter.group_delay_ms

    def output_frames(self, input_frames: int) -> int:
        """How many output frames the next ``process`` of ``input_frames`` frames returns."""
        start, limit = int(self._state[0]), input_frames * self._up
        return (limit - start + self._down - 1) // self._down if limit > start else 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk (int16, interleaved if stereo); returns a new int16 array."""
        samples = np.ascontiguousarray(samples, dtype=np.int16)
        out = np.empty(self.output_frames(len(samples) // self.channels) * self.channels,
                       dtype=np.int16)
        self.process_into(samples, out)
        return out

    def process_into(self, samples: np.ndarray, out: np.ndarray) -> int:
        """Resample the next chunk into ``out`` (int16); returns the number of output frames.

        ``out`` must hold ``output_frames(len(samples) // channels) * channels`` samples.
        """
        frames = len(samples) // self.channels
        if frames > self._capacity:
            self._grow(frames)
        needed = self.output_frames(frames) * self.channels
        if len(out) < needed:  # numba does not bounds-check: this guard is what keeps memory safe
            raise BufferTooSmall(f"out holds {len(out)} samples, this chunk needs {needed}")
        return int(kernels.resample(samples, self._history, self._bank, self._state,
                                    self._acc, self._filtered, out))

    def flush(self) -> np.ndarray:
        """Emit the tail still in the filter (end of utterance), then start afresh.

        The result is what ``process`` would return for ``K - 1`` frames of silence, so a stream
        followed by ``flush()`` equals the one-shot conversion of the stream plus that silence.
        """
        tail = self.process(self._flush_input)
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget all history (barge-in / clear): the next chunk starts from silence."""
        self._history[:] = 0.0
        self._state[0] = 0

    def _grow(self, frames: int) -> None:
        history = np.zeros((self.channels, self.filter.history + frames), dtype=np.float32)
        if self._capacity:
            history[:, : self.filter.history] = self._history[:, : self.filter.history]
        self._history = history
        self._acc = np.zeros(frames, dtype=np.float32)
        self._filtered = np.zeros(frames * self._up // self._down + 2, dtype=np.float32)
        self._capacity = frames
