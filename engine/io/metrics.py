"""Prometheus metrics of one server, in its own ``CollectorRegistry`` (served at ``/metrics``).

:class:`Metrics` owns every metric; the bridge and server call its small helpers. Label
values are bounded (provider names from the specs, outcomes and reasons from fixed sets), so
cardinality stays small however many calls run.

``Metrics(multiprocess=True)`` is for the worker processes of ``callbridge serve --workers N``
(:mod:`engine.io.workers`): prometheus_client's multiprocess mode, where every process writes
its values to files in ``$PROMETHEUS_MULTIPROC_DIR`` (which must be set before
prometheus_client is first imported) and :meth:`Metrics.render` adds up every process's files,
so whichever worker is scraped answers for all of them. The active-calls gauge is summed over
live processes only (``livesum``). Frames cannot be read from other processes' calls at scrape
time, so there ``callbridge_frames_total`` is a real counter: :class:`FrameCounter` adds each
call's frames when it ends and folds in live calls' progress when :meth:`Metrics.fold` runs
(the server does that every second), so live calls' frames show up to a second late.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from engine.core.commands import Notice

#: why a call ended, as the ``outcome`` label says it
OUTCOMES = (
    "completed",
    "ai_unreachable",
    "ai_dropped",
    "protocol_error",
    "idle_timeout",
    "drained",
    "error",
)


#: the processing-time histogram observes one frame in this many (a timer read and a histogram
#: update per frame would cost more than a tenth of the frame's own work)
FRAME_TIME_SAMPLE = 8

_LEGS = ("telephony", "ai")


class FrameCounts(Collector):
    """``callbridge_frames_total`` read from the calls themselves at scrape time.

    The call core already counts every frame each way per leg; incrementing a Prometheus
    counter per frame as well would double that work on the hot path. Live calls are summed
    when scraped; a finished call's counts are folded in once, by :meth:`call_ended`.
    """

    def __init__(self, live: Callable[[], Iterable[Any]]) -> None:
        self._live = live
        self._finished = {(leg, d): 0 for leg in _LEGS for d in ("in", "out")}

    def call_ended(self, session: Any) -> None:
        """Fold in a finished call's frame counts: call it once, when the call leaves the live set."""
        for leg, model in (("telephony", session.tel), ("ai", session.ai)):
            self._finished[(leg, "in")] += model.frames_in
            self._finished[(leg, "out")] += model.frames_out

    def collect(self) -> Iterable[CounterMetricFamily]:
        """prometheus_client's scrape hook: finished calls' counts plus the live calls' own."""
        totals = dict(self._finished)
        for session in self._live():
            for leg, model in (("telephony", session.tel), ("ai", session.ai)):
                totals[(leg, "in")] += model.frames_in
                totals[(leg, "out")] += model.frames_out
        family = CounterMetricFamily("callbridge_frames", "WebSocket frames by leg and direction",
                                     labels=["leg", "direction"])
        for (leg, direction), value in totals.items():
            family.add_metric([leg, direction], value)
        yield family


class FrameCounter:
    """``callbridge_frames_total`` as a real counter, for multiprocess mode (see the module doc).

    Same interface as :class:`FrameCounts` plus :meth:`fold`; the hot path still only bumps
    the call core's own frame counts. Each live call remembers what has been added for it so
    far; :meth:`fold` adds the difference, :meth:`call_ended` adds the rest and forgets it.
    """

    def __init__(self, live: Callable[[], Iterable[Any]], registry: CollectorRegistry) -> None:
        self._live = live
        counter = Counter(
            "callbridge_frames",
            "WebSocket frames by leg and direction",
            ["leg", "direction"],
            registry=registry,
        )
        self._children = [counter.labels(leg, d) for leg in _LEGS for d in ("in", "out")]
        self._added: dict[Any, tuple[int, int, int, int]] = {}  # live session -> counts added

    @staticmethod
    def _counts(session: Any) -> tuple[int, int, int, int]:
        tel, ai = session.tel, session.ai
        return (tel.frames_in, tel.frames_out, ai.frames_in, ai.frames_out)

    def _add(self, now: tuple[int, int, int, int], before: tuple[int, int, int, int]) -> None:
        for child, n, b in zip(self._children, now, before, strict=True):
            if n > b:
                child.inc(n - b)

    def call_ended(self, session: Any) -> None:
        """Add what a finished call counted since the last :meth:`fold`, and forget the call."""
        self._add(self._counts(session), self._added.pop(session, (0, 0, 0, 0)))

    def fold(self) -> None:
        """Add what each live call counted since the last fold (the server calls it every second)."""
        for session in self._live():
            now = self._counts(session)
            self._add(now, self._added.get(session, (0, 0, 0, 0)))
            self._added[session] = now


class GcPauses:
    """``callbridge_gc_pause_seconds{generation}``: how long each run of Python's cyclic garbage
    collector stopped the process, by the generation it collected.

    Every call in the process waits out a collection, so a long one is a latency spike in every
    direction at once; this is where to look when p99 jumps while mean CPU does not. Installed
    by a server that owns its process (``callbridge serve``), removed when it closes.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "callbridge_gc_pause_seconds",
            "time the process spent in each cyclic garbage collection, by generation collected",
            ["generation"],
            registry=registry,
            buckets=(5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5),
        )
        self._by_generation = [self.histogram.labels(str(g)) for g in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """The ``gc.callbacks`` hook: times each collection from its start to its stop."""
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        """Start timing collections (a ``gc.callbacks`` hook); installing twice is harmless."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        """Stop timing collections; call it when the server that installed it closes."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class Metrics:
    """Every metric of one server (see the module docstring): make one per server, pass it to
    each bridge, and serve :meth:`render` at ``/metrics``. ``live_sessions`` lists the calls in
    progress, read when scraped."""

    def __init__(
        self, live_sessions: Callable[[], Iterable[Any]] = tuple, *, multiprocess: bool = False
    ) -> None:
        self.multiprocess = multiprocess
        r = self.registry = CollectorRegistry()
        self.active_calls = Gauge(
            "callbridge_active_calls", "calls in progress", registry=r, multiprocess_mode="livesum"
        )
        self.calls = Counter(
            "callbridge_calls",
            "finished calls by provider and outcome",
            ["provider", "outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "callbridge_upgrades_rejected",
            "WebSocket upgrades refused, by HTTP status",
            ["status"],
            registry=r,
        )
        self.auth_failures = Counter(
            "callbridge_auth_failures",
            "upgrades refused by authentication, by the route's provider and the reason "
            "(missing, malformed, invalid, expired, replayed, source, scheme)",
            ["provider", "reason"],
            registry=r,
        )
        self.tls_to_plain = Counter(
            "callbridge_tls_to_plain_listener",
            "connections that opened with a TLS ClientHello on the plain ws:// listener",
            registry=r,
        )
        self.frames: FrameCounts | FrameCounter
        if multiprocess:
            self.frames = FrameCounter(live_sessions, r)
        else:
            self.frames = FrameCounts(live_sessions)
            r.register(self.frames)
        self.bad_messages = Counter(
            "callbridge_bad_messages",
            "messages refused by a protocol policy, by reason",
            ["leg", "reason"],
            registry=r,
        )
        self.ai_connect_failures = Counter(
            "callbridge_ai_connect_failures",
            "failed attempts to open the AI leg",
            ["ai"],
            registry=r,
        )
        self.playout_underruns = Counter(
            "callbridge_playout_underruns",
            "times the platform ran dry while audio was queued",
            registry=r,
        )
        self.playout_overruns = Counter(
            "callbridge_playout_overruns", "AI audio dropped beyond the playout cap", registry=r
        )
        self.marks = Counter(
            "callbridge_marks", "marks resolved, by outcome", ["outcome"], registry=r
        )
        self.clears = Counter("callbridge_clears", "barge-ins (AI clear)", registry=r)
        self.frame_seconds = Histogram(
            "callbridge_frame_processing_seconds",
            f"time inside the call core per received frame (one frame in {FRAME_TIME_SAMPLE} is timed)",
            ["leg"],
            registry=r,
            buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2),
        )
        # Children bound once: labels() costs a dict lookup and a lock per call.
        self.frame_time = {leg: self.frame_seconds.labels(leg) for leg in _LEGS}
        self.gc_pauses = GcPauses(r)

    def notice(self, notice: Notice) -> None:
        """Count what a core :class:`~engine.core.commands.Notice` reports (violations, overruns,
        marks, clears); give it every notice, the others are ignored."""
        code = notice.code
        if code.startswith("violation."):
            self.bad_messages.labels(notice.leg, code[len("violation.") :]).inc()
        elif code == "playout.overrun":
            self.playout_overruns.inc()
        elif code.startswith("mark.") and code[5:] in ("played", "cleared", "timed_out"):
            self.marks.labels(code[5:]).inc()
        elif code == "clear":
            self.clears.inc()

    def fold(self) -> None:
        """Multiprocess mode: add live calls' frames so far to the shared counter (else no-op)."""
        if isinstance(self.frames, FrameCounter):
            self.frames.fold()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric, for the ``/metrics`` response (in
        multiprocess mode, summed over every worker)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.fold()  # this process's own live calls, fresh; the others' are up to a second old
        aggregate = CollectorRegistry()
        MultiProcessCollector(aggregate)
        return generate_latest(aggregate)
