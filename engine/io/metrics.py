"""Prometheus metrics of one server, in its own ``CollectorRegistry`` (served at ``/metrics``).

:class:`Metrics` owns every metric; the bridge and server call its small helpers. Label
values are bounded (provider names from the specs, outcomes and reasons from fixed sets), so
cardinality stays small however many calls run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from engine.core.actions import Notice

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
        for leg, model in (("telephony", session.tel), ("ai", session.ai)):
            self._finished[(leg, "in")] += model.frames_in
            self._finished[(leg, "out")] += model.frames_out

    def collect(self) -> Iterable[CounterMetricFamily]:
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


class Metrics:
    def __init__(self, live_sessions: Callable[[], Iterable[Any]] = tuple) -> None:
        r = self.registry = CollectorRegistry()
        self.active_calls = Gauge("callbridge_active_calls", "calls in progress", registry=r)
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

    def notice(self, notice: Notice) -> None:
        code = notice.code
        if code.startswith("violation."):
            self.bad_messages.labels(notice.leg, code[len("violation.") :]).inc()
        elif code == "playout.overrun":
            self.playout_overruns.inc()
        elif code.startswith("mark.") and code[5:] in ("played", "cleared", "timed_out"):
            self.marks.labels(code[5:]).inc()
        elif code == "clear":
            self.clears.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
