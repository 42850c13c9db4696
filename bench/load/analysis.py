"""Turn the generator's and the AI peer's timestamps into per-step figures.

Frames are matched by *audio position*, not by message count: a relay may regroup audio
(soxr's streaming presets return nothing for several frames, then a burst), so the latency of a
message is the time since the newest audio it completes was sent. For callbridge (one message
per 20 ms frame each way) this is exactly frame-by-frame matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FRAME_S = 0.02


@dataclass
class Direction:
    latencies_ms: list[float] = field(default_factory=list)
    sent_frames: int = 0
    recv_frames: float = 0.0
    lost: int = 0
    duplicated: int = 0
    late: int = 0  # later than one frame period (20 ms)

    def percentiles(self) -> dict[str, float]:
        if not self.latencies_ms:
            return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
        values = np.asarray(self.latencies_ms)
        return {
            "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)),
            "p99": float(np.percentile(values, 99)),
            "max": float(values.max()),
        }


def _positions(events: list[list[float]], bytes_per_frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, cumulative audio position in frames after each message)."""
    if not events:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(events, dtype=float)
    return arr[:, 0], np.cumsum(arr[:, 1]) / bytes_per_frame


def match(
    sent_times: list[float],
    recv: list[list[float]],
    recv_bytes_per_frame: int,
    window: tuple[float, float],
    direction: Direction,
) -> None:
    """Per 20 ms frame of audio: the time from its sending until the message that carries it
    arrived. ``sent_times``: one entry per frame sent; ``recv``: ``[time, payload bytes]`` per
    message received on the other side."""
    sent = np.asarray(sent_times, dtype=float)
    times, position = _positions(recv, recv_bytes_per_frame)
    lo, hi = window
    in_window = np.nonzero((sent >= lo) & (sent <= hi))[0]
    direction.sent_frames += len(in_window)
    if len(in_window) == 0:
        return
    # frame i has arrived with the first message whose cumulative position reaches i + 1
    carrier = np.searchsorted(position, in_window + 1 - 1e-6, side="left")
    arrived = carrier < len(times)
    latency = (times[carrier[arrived]] - sent[in_window[arrived]]) * 1000.0
    direction.latencies_ms.extend(latency.tolist())
    direction.late += int((latency > FRAME_S * 1000).sum())
    direction.lost += int((~arrived).sum())
    received = float(position[-1]) if len(position) else 0.0
    if received > len(sent) + 0.5:
        direction.duplicated += int(received - len(sent))


def jitter_ms(recv: list[list[float]], window: tuple[float, float]) -> list[float]:
    """Deviation of inter-arrival gaps from 20 ms for downlink frames inside the window."""
    times = np.asarray([r[0] for r in recv if window[0] <= r[0] <= window[1]])
    if len(times) < 3:
        return []
    return (np.abs(np.diff(times) - FRAME_S) * 1000.0).tolist()


def bargein(gen: dict[str, Any], ai: dict[str, Any], quiet_s: float) -> tuple[list[float], list[float], int]:
    """(clear latencies ms, the same as the generator's loop saw them, stale frames): the AI's
    clear to the platform's (its arrival at the platform's socket), and audio that still reached
    the caller in the quiet window after it."""
    latencies, seen = [], []
    stale = 0
    recv_times = np.asarray([r[0] for r in gen["recv"]]) if gen["recv"] else np.zeros(0)
    for sent_at, got_at, app_at in zip(ai["clears"], gen["clears"], gen.get("clears_app", gen["clears"]), strict=False):
        latencies.append((got_at - sent_at) * 1000.0)
        seen.append((app_at - sent_at) * 1000.0)
        stale += int(((recv_times > got_at) & (recv_times < sent_at + quiet_s - 0.1)).sum())
    return latencies, seen, stale
