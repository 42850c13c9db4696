"""Paced playout of the AI's audio to the platform, and the ledger of marks placed in it.

AI providers send audio faster than real time. Handing it all to the platform at once is what
makes barge-in fail (peers leave 1-3 s, sometimes 60 s, of stale speech queued at the platform),
so :class:`Playout` keeps the audio and releases it at most ``lead_ms`` ahead of the platform's
playback clock. A clear then drops everything not yet released, at once.

The playback clock is modelled from what was sent: the platform plays each frame in real time
from when it arrives, after what it already holds. ``platform_end`` is the wall time at which
the platform will have played everything sent so far, so ``played_ms(now)`` (audio actually
heard) is the audio sent minus what is still ahead of ``now``. This is the cut point reported to
an AI on barge-in: audio heard, not bytes sent.

Marks ride in the same queue. Each resolves exactly once in the :class:`MarkLedger`: *played*
(the platform's echo, or the playout clock passing it where the platform has no marks),
*cleared* (dropped by a clear: also when the platform echoes it on clear, as Twilio does), or
*timed_out* (a native mark whose echo never came).

Sans-I/O: every method takes ``now`` (seconds, any monotonic origin); nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from math import inf

PLAYED = "played"
CLEARED = "cleared"
TIMED_OUT = "timed_out"


@dataclass(slots=True)
class Mark:
    """A mark placed by the AI: its name, the short name used on the platform's wire, and
    where it sits in the audio stream."""

    name: str
    wire: str
    position_ms: float
    outcome: str | None = None  # None until it resolves
    play_at: float = inf  # wall time the audio before it finishes playing (once released)
    released: bool = False


class MarkLedger:
    """Every mark of a call, each resolving exactly once."""

    def __init__(self, timeout_s: float, max_pending: int) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._pending: dict[str, Mark] = {}  # by wire name, insertion-ordered
        self._counter = 0
        self.resolved: dict[str, int] = {PLAYED: 0, CLEARED: 0, TIMED_OUT: 0}

    def __len__(self) -> int:
        return len(self._pending)

    def create(self, name: str, position_ms: float) -> Mark:
        """A new pending mark for the AI's ``name`` at ``position_ms`` of the playout stream; its
        wire name (what the platform echoes) is unique within the call."""
        self._counter += 1
        mark = Mark(name, f"cb{self._counter}", position_ms)
        self._pending[mark.wire] = mark
        return mark

    def is_pending(self, wire: str) -> bool:
        """Whether ``wire`` names a mark callbridge sent that has not resolved yet."""
        return wire in self._pending

    def settle(self, wire: str, outcome: str) -> Mark | None:
        """Resolve one mark; ``None`` if it is unknown or already resolved."""
        mark = self._pending.pop(wire, None)
        if mark is not None:
            mark.outcome = outcome
            self.resolved[outcome] += 1
        return mark

    def settle_all(self, outcome: str) -> list[Mark]:
        """Resolve every pending mark with ``outcome`` (a clear); returns them in order."""
        marks = list(self._pending.values())
        self._pending.clear()
        for mark in marks:
            mark.outcome = outcome
            self.resolved[outcome] += 1
        return marks

    def due(self, now: float, emulated: bool) -> list[Mark]:
        """Marks whose time has come: played (emulated) or timed out (native, no echo)."""
        out = []
        for mark in list(self._pending.values()):
            if not mark.released:
                continue
            deadline = mark.play_at if emulated else mark.play_at + self.timeout_s
            if deadline <= now:
                out.append(self._pending.pop(mark.wire))
                mark.outcome = PLAYED if emulated else TIMED_OUT
                self.resolved[mark.outcome] += 1
        return out

    def next_deadline(self, emulated: bool) -> float:
        """When :meth:`due` next has a mark to hand out (``inf``: none)."""
        best = inf
        for mark in self._pending.values():
            if mark.released:
                best = min(best, mark.play_at if emulated else mark.play_at + self.timeout_s)
        return best


@dataclass(slots=True)
class _Frame:
    data: bytes
    duration_ms: float


@dataclass(slots=True)
class PlayoutStats:
    """What a call's playout did, for its summary line and metrics."""

    frames_sent: int = 0
    ms_sent: float = 0.0
    ms_dropped_by_clear: float = 0.0
    ms_dropped_by_overrun: float = 0.0
    underruns: int = 0
    overruns: int = 0
    clears: int = 0


@dataclass
class Playout:
    """Releases queued frames to the platform at most ``lead_ms`` ahead of its playback clock.

    ``max_buffer_ms`` caps the audio held here; ``on_overrun`` says what gives when the AI
    exceeds it: ``drop_oldest`` (skip ahead), ``drop_newest`` (refuse the new audio) or
    ``close`` (report it; the caller closes the call).
    """

    lead_ms: float = 200.0
    max_buffer_ms: float = 120_000.0
    on_overrun: str = "drop_oldest"
    _queue: deque[_Frame | Mark] = field(default_factory=deque)
    _queued_ms: float = 0.0
    _platform_end: float = -inf
    _sent_ms: float = 0.0
    stats: PlayoutStats = field(default_factory=PlayoutStats)

    @property
    def queued_ms(self) -> float:
        """Audio held here, not yet released to the platform."""
        return self._queued_ms

    @property
    def position_ms(self) -> float:
        """Stream position after everything queued (where a mark placed now would sit)."""
        return self._sent_ms + self._queued_ms

    def push(self, data: bytes, duration_ms: float) -> bool:
        """Queue one frame. Returns ``False`` when the buffer cap refused or displaced audio."""
        ok = True
        if self._queued_ms + duration_ms > self.max_buffer_ms:
            self.stats.overruns += 1
            ok = False
            if self.on_overrun == "drop_newest" or self.on_overrun == "close":
                self.stats.ms_dropped_by_overrun += duration_ms
                return False
            while self._queue and self._queued_ms + duration_ms > self.max_buffer_ms:
                item = self._queue.popleft()
                if isinstance(item, _Frame):
                    self._queued_ms -= item.duration_ms
                    self._sent_ms += 0  # dropped audio is never heard nor sent
                    self.stats.ms_dropped_by_overrun += item.duration_ms
        self._queue.append(_Frame(data, duration_ms))
        self._queued_ms += duration_ms
        return ok

    def add_mark(self, mark: Mark) -> None:
        """Place ``mark`` after the audio queued so far."""
        self._queue.append(mark)

    @property
    def drains_at(self) -> float:
        """Wall time at which the platform will have played everything released to it."""
        return self._platform_end

    def ahead_ms(self, now: float) -> float:
        """Audio the platform holds but has not played yet."""
        return max(0.0, (self._platform_end - now) * 1000.0)

    def played_ms(self, now: float) -> float:
        """Audio the caller has actually heard so far (by the playback clock)."""
        return self._sent_ms - self.ahead_ms(now)

    def release(self, now: float) -> Iterator[_Frame | Mark]:
        """Yield, in order, the frames (and the marks after them) that may go out now."""
        lead = self.lead_ms / 1000.0
        queue = self._queue
        while queue:
            item = queue[0]
            if isinstance(item, Mark):
                queue.popleft()
                item.released = True
                item.play_at = max(self._platform_end, now)
                yield item
                continue
            duration = item.duration_ms / 1000.0
            start = self._platform_end if self._platform_end > now else now
            if start + duration - now > lead + 1e-9 and self._platform_end > now:
                return
            if self._platform_end != -inf and self._platform_end < now - 0.001 and self._sent_ms:
                # The platform ran dry while we still held audio: our pacing was late.
                self.stats.underruns += 1
            queue.popleft()
            self._queued_ms -= item.duration_ms
            self._sent_ms += item.duration_ms
            self._platform_end = start + duration
            self.stats.frames_sent += 1
            self.stats.ms_sent += item.duration_ms
            yield item

    def next_deadline(self, now: float) -> float:
        """When :meth:`release` will next have something to give (``inf``: nothing queued)."""
        for item in self._queue:
            if isinstance(item, Mark):
                return now
            lead = self.lead_ms / 1000.0
            return max(now, self._platform_end + item.duration_ms / 1000.0 - lead)
        return inf

    def clear(self, now: float, platform_flushes: bool) -> list[Mark]:
        """Drop every unreleased frame; returns the marks that were still queued.

        ``platform_flushes``: the platform drops its own queue too (a native clear), so the
        playback clock stops now; otherwise what it holds still plays out.
        """
        marks = [item for item in self._queue if isinstance(item, Mark)]
        self.stats.ms_dropped_by_clear += self._queued_ms
        self.stats.clears += 1
        self._queue.clear()
        self._queued_ms = 0.0
        if platform_flushes and self._platform_end > now:
            self._sent_ms -= (self._platform_end - now) * 1000.0  # never heard
            self._platform_end = now
        return marks
