"""A small bounded reorder buffer for platforms that do not guarantee media order (Telnyx).

Declared per platform spec as ``audio.reorder: {by: sequence|chunk|timestamp, window: N}``; the
session only builds one when a spec asks, so other platforms pay nothing.

Frames are keyed by the declared field. The buffer releases frames in key order as soon as the
next expected one is there; a frame that is still missing once ``window`` later frames are held
is given up on: the buffer reports a gap (so the session can conceal it) and moves on. A frame
arriving after its turn (or twice) is dropped and counted.

``by: sequence`` counts every message the platform sends (Twilio-style ``sequenceNumber``), so
control messages take numbers too: the session hands their numbers to :meth:`Reorder.skip`, and
they never count as missing audio. ``by: timestamp`` keys by milliseconds: the next expected
key is the previous one plus that frame's duration.

Sans-I/O and clock-free, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Callable

#: what :meth:`Reorder.push` yields: audio bytes, or the size of a gap (frames or ms)
Released = bytes | int


class Reorder:
    """Puts a platform's media frames back in order by sequence number or timestamp, within a
    window; gives up on a gap once the window has moved past it."""

    __slots__ = ("by", "dropped", "duration_ms", "expected", "gaps", "held", "window")

    def __init__(self, by: str, window: int, duration_ms: Callable[[bytes], float] | None = None) -> None:
        self.by = by
        self.window = max(1, window)
        self.duration_ms = duration_ms
        self.expected: int | None = None
        self.held: dict[int, bytes | None] = {}  # None: a control message's number (sequence)
        self.dropped = 0  # late or duplicate frames
        self.gaps = 0  # frames (or timestamp gaps) given up on

    def _step(self, key: int, audio: bytes | None) -> int:
        if self.by == "timestamp" and audio is not None and self.duration_ms is not None:
            return key + max(1, round(self.duration_ms(audio)))
        return key + 1

    def skip(self, key: int) -> list[Released]:
        """A control message took number ``key`` (``by: sequence`` only)."""
        if self.expected is None:
            self.expected = key + 1  # e.g. the start message: media starts right after it
            return []
        if key < self.expected or key in self.held:
            return []
        self.held[key] = None
        return self._release()

    def push(self, key: int | None, audio: bytes) -> list[Released]:
        """Add one frame; returns what may go on now, in order."""
        if key is None:
            return [audio]  # no ordering information on this frame: pass it on
        if self.expected is None:
            self.expected = key
        if key < self.expected or key in self.held:
            self.dropped += 1
            return []
        self.held[key] = audio
        return self._release()

    def _release(self) -> list[Released]:
        out: list[Released] = []
        held = self.held
        while True:
            expected = self.expected
            assert expected is not None
            while expected in held:
                audio = held.pop(expected)
                if audio is not None:
                    out.append(audio)
                expected = self._step(expected, audio)
            self.expected = expected
            if sum(1 for v in held.values() if v is not None) < self.window:
                return out
            # The expected frame is still missing with a full window behind it: give up on it.
            nxt = min(held)
            self.gaps += 1
            out.append(nxt - expected)
            self.expected = nxt

    def flush(self) -> list[bytes]:
        """The end of the stream: everything still held, in order (gaps are not concealed)."""
        out = [audio for _, audio in sorted(self.held.items()) if audio is not None]
        self.held.clear()
        return out
