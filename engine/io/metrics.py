"""Prometheus metrics of one server, in its own ``CollectorRegistry`` (served at ``/metrics``).

:class:`Metrics` owns every metric; the bridge and server call its small helpers. Label
values are bounded (provider names from the specs, outcomes and reasons from fixed sets), so
cardinality stays small however many calls run.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


class Metrics:
    def __init__(self) -> None:
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
        self.frames = Counter(
            "callbridge_frames",
            "WebSocket frames by leg and direction",
            ["leg", "direction"],
            registry=r,
        )
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
            "time inside the call core per received frame",
            ["leg"],
            registry=r,
            buckets=(5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2),
        )
        # Children bound once: labels() costs a dict lookup and a lock per call.
        self.frames_in = {leg: self.frames.labels(leg, "in") for leg in ("telephony", "ai")}
        self.frames_out = {leg: self.frames.labels(leg, "out") for leg in ("telephony", "ai")}
        self.frame_time = {leg: self.frame_seconds.labels(leg) for leg in ("telephony", "ai")}

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
