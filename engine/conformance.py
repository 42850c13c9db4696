"""The conformance kit: one lifecycle suite for every platform and AI backend spec.

``run_conformance(path)`` loads one spec file (a telephony platform under ``providers/`` or an
AI backend under ``ai_providers/``, or anywhere: its shape tells which), drives a real
:class:`~engine.core.session.CallSession` through a whole call with simulated time, and returns a
:class:`Report`: one line per check, PASS / FAIL / SKIP, in the adapter guide's categories
(``handshake/connected``, ``meta/start``, ``audio/media``, ``control/clear``,
``control/mark (optional)``) plus lifecycle lines (malformed, unknown and out-of-order messages
against ``protocol.yaml``'s own table, the end of the call from either side).

There is no per-platform code: the kit plays the platform (or the AI) from the spec itself
(:mod:`engine.language.synth`: ``build_incoming`` writes the messages the spec would recognise,
``read_outgoing`` reads what callbridge sent back through the spec's templates). Audio is real:
a 440 Hz tone in the platform's own format and framing goes to the AI, a 660 Hz tone from the
AI comes back; every frame callbridge sends must obey the spec's framing rules and decode, and
each tone must survive by correlation. An AI spec is run against a known platform spec
(``twilio``) with the kit acting as the AI.

A failing line says where to look: ``file:LINE:COL: $.path: what went wrong``, the place in
the spec that produced it when the kit can tell (a template needing a value the call does not
have, framing that never releases audio, a pattern that does not decode).

``callbridge conformance SPEC`` prints the report; exit status 0 when nothing failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from engine.core.commands import AI, TELEPHONY, CloseLeg, Command, Notice, OpenLeg, Send
from engine.core.session import AITarget, CallRoute, CallSession
from engine.dsp import formats
from engine.dsp.formats import AudioFormat
from engine.errors import CallbridgeError, CheckFailed, SpecError, SpecErrors, UsageError
from engine.language.loader import SpecSet, kind_of, load_peer, load_specs
from engine.language.peer import CompiledPeer
from engine.language.protocol import Policy
from engine.language.synth import build_incoming, read_outgoing
from engine.language.yamlload import JsonPath, LoadedDocument, load_file

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
CALLER_TONE, AI_TONE = 440.0, 660.0
MIN_SCORE = 0.9  # fraction of the signal's energy at the tone's frequency
CALLER = "+14155550123"
NUMBER = "+14155550100"


@dataclass
class Line:
    name: str
    status: str
    detail: str = ""


@dataclass
class Report:
    spec: str
    kind: str  # telephony | ai
    partner: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(line.status != FAIL for line in self.lines)

    def line(self, name: str) -> Line:
        return next(line for line in self.lines if line.name == name)

    def text(self) -> str:
        what = "telephony platform" if self.kind == "telephony" else "AI provider"
        other = "AI provider" if self.kind == "telephony" else "platform"
        out = [f"callbridge conformance: {self.spec} ({what}; {other} played by the kit: {self.partner})"]
        width = max((len(line.name) for line in self.lines), default=10)
        for line in self.lines:
            out.append(f"{line.status:<5} {line.name:<{width}}  {line.detail}".rstrip())
        counts = {s: sum(1 for line in self.lines if line.status == s) for s in (PASS, FAIL, SKIP)}
        out.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
        return "\n".join(out)


# ---------------------------------------------------------------------------------- audio


def tone(rate: int, ms: float, freq: float, amp: float = 8000.0, start: int = 0) -> np.ndarray:
    n = round(rate * ms / 1000.0)
    t = (np.arange(n) + start) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def encode(pcm: np.ndarray, rate: int, fmt: AudioFormat) -> bytes:
    from engine.dsp.transcoder import Transcoder

    src = AudioFormat(formats.PCM_16_LE, rate, 1)
    data = np.asarray(pcm, dtype="<i2").tobytes()
    if src == fmt:
        return data
    t = Transcoder(src, fmt)
    return t.convert(data) + t.flush()


def decode(data: bytes, fmt: AudioFormat) -> np.ndarray:
    from engine.dsp.transcoder import Transcoder

    dst = AudioFormat(formats.PCM_16_LE, fmt.sample_rate, 1)
    if fmt == dst:
        pcm = data
    else:
        t = Transcoder(fmt, dst)
        pcm = t.convert(data) + t.flush()
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)


def tone_score(samples: np.ndarray, rate: int, freq: float) -> float:
    """How much of the signal is the tone: 1.0 for a pure tone of ``freq`` at any phase."""
    skip = int(rate * 0.04)  # resampler and codec start-up
    x = samples[skip : len(samples) - skip // 2]
    if len(x) < rate // 50:
        return 0.0
    t = np.arange(len(x)) / rate
    s, c = np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)
    energy = float(np.dot(x, x))
    if energy <= 0:
        return 0.0
    a, b = float(np.dot(x, s)), float(np.dot(x, c))
    return float(np.sqrt((a * a + b * b) / (energy * float(np.dot(s, s)))))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------------------------- harness


class Harness:
    """A session driven on simulated time; the AI leg opens when asked, closes report back."""

    def __init__(self, specs: SpecSet, provider: str, ai: str, query: Mapping[str, str] | None = None) -> None:
        self.specs = specs
        self.session = CallSession(
            specs,
            CallRoute(provider, virtual_number=NUMBER, caller_id=CALLER, query=dict(query or {})),
            AITarget(specs.ai_providers[ai]),
            call_id="conformance",
        )
        self.tel_peer = specs.providers[provider]
        self.ai_peer = specs.ai_providers[ai]
        self.t = 0.0
        self.actions: list[Command] = []
        self.opened: list[OpenLeg] = []
        self._closed: set[str] = set()

    def _run(self, actions: list[Command]) -> list[Command]:
        done: list[Command] = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            done.append(action)
            more: list[Command] = []
            if isinstance(action, OpenLeg):
                self.opened.append(action)
                more = self.session.ai_opened(self.t)
            elif isinstance(action, CloseLeg) and action.leg not in self._closed:
                self._closed.add(action.leg)
                more = (self.session.ai_closed if action.leg == AI else self.session.telephony_closed)(self.t)
            pending.extend(more)
        self.actions.extend(done)
        return done

    def tel(self, frame: str | bytes) -> list[Command]:
        return self._run(self.session.receive_telephony(frame, self.t))

    def ai(self, frame: str | bytes) -> list[Command]:
        return self._run(self.session.receive_ai(frame, self.t))

    def tel_closed(self) -> list[Command]:
        self._closed.add(TELEPHONY)
        return self._run(self.session.telephony_closed(self.t))

    def advance(self, seconds: float, step: float = 0.02) -> list[Command]:
        end = self.t + seconds
        out: list[Command] = []
        while True:
            deadline = self.session.next_deadline()
            nxt = min(end, self.t + step) if deadline is None else min(end, deadline, self.t + step)
            self.t = max(self.t, nxt)
            if deadline is not None and deadline <= self.t:
                out += self._run(self.session.on_timer(self.t))
            if self.t >= end:
                return out

    def mark(self) -> int:
        return len(self.actions)

    def sent(self, leg: str, since: int = 0) -> list[Send]:
        return [a for a in self.actions[since:] if isinstance(a, Send) and a.leg == leg]

    def read(self, leg: str, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        peer = self.tel_peer if leg == TELEPHONY else self.ai_peer
        out = []
        for send in self.sent(leg, since):
            frame: str | bytes = send.data if send.binary else send.data.decode()
            found = read_outgoing(peer, frame)
            out.append(found if found is not None else ("?", {}))
        return out

    def notices(self, since: int = 0, prefix: str = "") -> list[Notice]:
        return [a for a in self.actions[since:] if isinstance(a, Notice) and a.code.startswith(prefix)]

    def closes(self, leg: str, since: int = 0) -> list[CloseLeg]:
        return [a for a in self.actions[since:] if isinstance(a, CloseLeg) and a.leg == leg]

    def errors(self, since: int = 0) -> list[Notice]:
        return [n for n in self.notices(since) if n.level == "error" or n.code.startswith("violation.")]


# ---------------------------------------------------------------------------------- the suite


class Suite:
    """The checks for one spec; each check is a method returning a detail or raising."""

    def __init__(self, specs: SpecSet, peer: CompiledPeer, doc: LoadedDocument, partner: str) -> None:
        self.specs = specs
        self.peer = peer
        self.doc = doc
        self.partner = partner
        self.telephony = peer.kind == "telephony"
        self.provider = peer.name if self.telephony else partner
        self.ai_name = partner if self.telephony else peer.name
        self.tel_peer = specs.providers[self.provider]
        self.ai_peer = specs.ai_providers[self.ai_name]
        self.h = Harness(specs, self.provider, self.ai_name)
        self.seq = 0
        self.items = 0

    # -- messages the platform / the AI would send ------------------------------------

    def values(self, **extra: Any) -> dict[str, Any]:
        self.seq += 1
        audio = self.tel_peer.audio
        raw = load_file(self.tel_peer.file).data.get("audio", {}) if self.tel_peer.file else {}
        base = {
            "stream_id": "MZconformance00000000000000000001",
            "call_id": "CAconformance00000000000000000001",
            "account_id": "ACconformance",
            "from": CALLER,
            "to": NUMBER,
            "direction": "inbound",
            "custom": {},
            "track": "inbound",
            "status": "connected",
            "encoding": str(raw.get("encoding", audio.inbound.encoding)) if isinstance(raw, dict) else "",
            "sample_rate": audio.inbound.sample_rate,
            "channels": audio.inbound.channels,
            "sequence": self.seq,
        }
        base.update(extra)
        return base

    def platform(self, event: str, **extra: Any) -> str | bytes:
        return build_incoming(self.tel_peer, event, self.values(**extra))

    def from_ai(self, event: str, **values: Any) -> str | bytes:
        return build_incoming(self.ai_peer, event, values)

    # -- helpers ------------------------------------------------------------------------

    def tel_in(self) -> AudioFormat:
        return self.h.session.tel_in

    def tel_out(self) -> AudioFormat:
        return self.h.session.tel_out

    def fail_on_errors(self, since: int, where: JsonPath | None = None) -> None:
        errors = self.h.errors(since)
        if errors:
            first = errors[0]
            raise CheckFailed(f"{first.code}: {first.message}", _where_from_message(self.peer, first.message) or where)

    def open_call(self) -> None:
        """Handshake and start on the harness (used by the later checks)."""
        session = self.h.session
        if session.tel_leg_in("live"):
            return
        peer = self.tel_peer
        if "connected" in peer.mapped_events and session.tel_leg_in("opening"):
            self.h.tel(self.platform("connected"))
        if not session.tel_leg_in("live"):
            self.h.tel(self.platform("start"))

    # -- telephony checks --------------------------------------------------------------

    def t_connected(self) -> str:
        peer = self.tel_peer
        since = self.h.mark()
        frame = self.platform("connected")
        self.h.tel(frame)
        session = self.h.session
        state = session.tel.state
        self.fail_on_errors(since, ("events", "incoming", "message_patterns"))
        if not (session.tel_leg_in("setup") or session.tel_leg_in("live")):
            raise CheckFailed(
                f"after the handshake the telephony leg is in {state!r}", ("events", "incoming", "message_patterns")
            )
        combined = session.tel_leg_in("live")
        pattern = next(p for p in peer.patterns if "connected" in p.emits)
        return f"{pattern.key!r} recognised" + (" (also the start)" if combined else "")

    def t_start(self) -> str:
        since = self.h.mark()
        if not self.h.session.tel_leg_in("live"):
            self.h.tel(self.platform("start"))
        self.fail_on_errors(since, ("events", "incoming", "message_patterns", "start"))
        if not self.h.session.tel_leg_in("live"):
            raise CheckFailed(
                f"start did not start the call (telephony leg in {self.h.session.tel.state!r})",
                ("events", "incoming", "message_patterns"),
            )
        if not self.h.opened:
            raise CheckFailed("the AI leg was not opened after start")
        first = self.h.read(AI)
        if not first or first[0][0] != "start":
            raise CheckFailed(f"the AI did not get its start message first (got {[n for n, _ in first][:3]})")
        replies = [name for name, _ in self.h.read(TELEPHONY, since)]
        fmt = self.tel_in()
        extra = f"; answered with {', '.join(replies)}" if replies else ""
        return f"format {fmt} accepted, AI leg opened, AI got its start{extra}"

    def t_media_in(self) -> str:
        fmt = self.tel_in()
        chunk_ms = self.tel_peer.audio.chunk_ms or 20.0
        pcm = tone(fmt.sample_rate, 1000, CALLER_TONE)
        data = encode(pcm, fmt.sample_rate, fmt)
        size = fmt.frame_bytes(chunk_ms)
        since = self.h.mark()
        for index, piece in enumerate(chunks(data, size)):
            self.h.tel(self.platform("media", audio=piece, chunk=index + 1, timestamp=int(index * chunk_ms)))
            self.h.advance(chunk_ms / 1000.0)
        self.fail_on_errors(since, ("events", "incoming", "message_patterns", "media"))
        received = b"".join(v["audio"] for name, v in self.h.read(AI, since) if name == "media" and "audio" in v)
        ai_fmt = self.h.session.ai_format
        samples = decode(received, ai_fmt)
        got_ms = len(samples) / ai_fmt.sample_rate * 1000
        if got_ms < 900:
            raise CheckFailed(f"the AI got {got_ms:.0f} ms of the caller's 1000 ms")
        score = tone_score(samples, ai_fmt.sample_rate, CALLER_TONE)
        if score < MIN_SCORE:
            raise CheckFailed(
                f"the caller's {CALLER_TONE:.0f} Hz tone reached the AI distorted (score {score:.3f})", ("audio",)
            )
        return f"1 s of {fmt} in {chunk_ms:g} ms frames reached the AI as {ai_fmt}, tone score {score:.3f}"

    def t_dtmf(self) -> str:
        if "dtmf" not in self.tel_peer.mapped_events:
            raise _Skip("the spec maps no dtmf message")
        since = self.h.mark()
        self.h.tel(self.platform("dtmf", digit="5", duration=100))
        self.fail_on_errors(since, ("events", "incoming", "message_patterns", "dtmf"))
        if "dtmf" not in self.ai_peer.templates:
            return f"digit 5 decoded ({self.ai_name} takes no digits: dropped with a notice)"
        found = [v for name, v in self.h.read(AI, since) if name == "dtmf"]
        where: JsonPath = (
            ("events", "outgoing", "dtmf") if not self.telephony else ("events", "incoming", "message_patterns", "dtmf")
        )
        if len(found) != 1:
            raise CheckFailed(f"the AI got {len(found)} dtmf messages for one key press", where)
        if "digit" in found[0] and found[0]["digit"] != "5":
            raise CheckFailed(f"the AI got digit {found[0]['digit']!r}, not '5'", where)
        return "digit 5 reached the AI" + ("" if "digit" in found[0] else " (inside its text)")

    def _ai_audio(self, ms: float, freq: float, start: int = 0) -> list[str | bytes]:
        fmt = self.h.session.ai_format
        data = encode(tone(fmt.sample_rate, ms, freq, 6000.0, start), fmt.sample_rate, fmt)
        from engine.language.synth import pattern_for

        pattern = pattern_for(self.ai_peer, "media", binary=self.ai_peer.audio.inbound_payload == "binary")
        self.items += 1  # each burst is a new AI audio item (OpenAI's item_id)
        extra = {r.field: f"conformance-{r.field}-{self.items}" for r in pattern.rules if r.field.startswith("x_")}
        return [self.from_ai("media", audio=piece, **extra) for piece in chunks(data, fmt.frame_bytes(20))]

    def framing_rule(self) -> Callable[[int], bool]:
        from engine.dsp.framer import Framer

        fmt = self.tel_out()
        framing = self.tel_peer.audio.framing
        frame_ms = framing.frame_ms
        if frame_ms is None and not (framing.multiple_of_bytes or framing.min_bytes):
            frame_ms = self.tel_peer.audio.chunk_ms
        framer = Framer(
            fmt,
            frame_ms=frame_ms,
            multiple_of_bytes=framing.multiple_of_bytes,
            min_bytes=framing.min_bytes,
            max_bytes=framing.max_bytes,
        )
        return framer.is_legal

    def t_media_out(self) -> str:
        since = self.h.mark()
        for frame in self._ai_audio(1000, AI_TONE):
            self.h.ai(frame)
        self.h.advance(1.6)
        self.fail_on_errors(since)
        fmt = self.tel_out()
        legal = self.framing_rule()
        pieces = [v["audio"] for name, v in self.h.read(TELEPHONY, since) if name == "media" and "audio" in v]
        framing_path: JsonPath = ("audio", "framing") if "framing" in self.doc.data.get("audio", {}) else ("audio",)
        if not pieces:
            raise CheckFailed("no media reached the platform from 1 s of AI audio", framing_path)
        for index, piece in enumerate(pieces):
            if not legal(len(piece)):
                raise CheckFailed(
                    f"media frame {index + 1} has {len(piece)} bytes, which the framing rules forbid for {fmt}",
                    framing_path,
                )
        samples = decode(b"".join(pieces), fmt)
        got_ms = len(samples) / fmt.sample_rate * 1000
        framing = self.tel_peer.audio.framing
        held = (framing.min_bytes or 0) / fmt.bytes_per_ms if fmt.bytes_per_ms else 0
        if got_ms < 1000 - held - 60:
            raise CheckFailed(f"the platform got {got_ms:.0f} ms of the AI's 1000 ms", framing_path)
        score = tone_score(samples, fmt.sample_rate, AI_TONE)
        if score < MIN_SCORE:
            raise CheckFailed(
                f"the AI's {AI_TONE:.0f} Hz tone reached the caller distorted (score {score:.3f})", ("audio",)
            )
        sizes = sorted({len(p) for p in pieces})
        return (
            f"{len(pieces)} frames of {fmt} ({', '.join(map(str, sizes[:3]))} B) obey the framing, "
            f"tone score {score:.3f}"
        )

    def t_mark(self) -> str:
        marks = self.tel_peer.marks
        if "mark" not in self.ai_peer.mapped_events:
            raise _Skip(f"{self.ai_name} sends no marks")
        if marks.mode == "none":
            raise _Skip("marks: none")
        since = self.h.mark()
        for frame in self._ai_audio(200, AI_TONE):
            self.h.ai(frame)
        self.h.ai(self.from_ai("mark", mark="conformance-1"))
        echoed = False
        for _ in range(100):
            self.h.advance(0.02)
            if marks.mode == "native" and not echoed:
                wires = [v.get("mark") for name, v in self.h.read(TELEPHONY, since) if name == "mark"]
                if wires:
                    self.h.advance(0.5)  # the audio before it plays out, then the platform echoes
                    self.h.tel(self.platform("mark", mark=wires[0], mark_status="played"))
                    echoed = True
            answers = [
                v for name, v in self.h.read(AI, since) if name.startswith("mark") and v.get("mark") == "conformance-1"
            ]
            if answers:
                break
        self.fail_on_errors(since, ("marks",))
        if marks.mode == "native" and not echoed:
            raise CheckFailed("no mark message reached the platform", ("events", "outgoing", "mark"))
        settled = [(name, v) for name, v in self.h.read(AI, since) if name.startswith("mark")]
        if not settled:
            raise CheckFailed("the AI's mark was never answered", ("marks",))
        name, values = settled[0]
        if name == "mark_cleared" or values.get("status") == "cleared":
            raise CheckFailed("a played mark was answered as cleared", ("marks",))
        how = "echoed by the platform" if marks.mode == "native" else "settled by the playout clock (emulated)"
        return f"mark sent after the audio, {how}, answered to the AI as played"

    def t_clear(self) -> str:
        since = self.h.mark()
        for frame in self._ai_audio(2000, AI_TONE):
            self.h.ai(frame)
        if "mark" in self.ai_peer.mapped_events:
            self.h.ai(self.from_ai("mark", mark="conformance-2"))
        self.h.advance(0.3)
        at = self.h.mark()
        self.h.ai(self.from_ai("clear"))
        self.h.advance(1.0)
        self.fail_on_errors(since, ("clear",))
        after = [name for name, _ in self.h.read(TELEPHONY, at)]
        if self.tel_peer.clear.mode == "native" and "clear" not in after:
            raise CheckFailed("the platform got no clear message", ("events", "outgoing", "clear"))
        if "clear" in after and "media" in after[after.index("clear") :]:
            raise CheckFailed("media reached the platform after the clear (stale audio)", ("clear",))
        if "media" in after and "clear" not in after:
            raise CheckFailed("media kept flowing after the AI's clear", ("clear",))
        answers = [
            (n, v) for n, v in self.h.read(AI, since) if n.startswith("mark") and v.get("mark") == "conformance-2"
        ]
        if "mark" in self.ai_peer.mapped_events and (
            not answers or not (answers[0][0] == "mark_cleared" or answers[0][1].get("status") == "cleared")
        ):
            raise CheckFailed("the mark behind the cleared audio was not answered as cleared", ("marks",))
        detail = "platform told to clear, no stale audio after it"
        if answers:
            detail += ", pending mark answered as cleared"
        if self.tel_peer.clear.acknowledged and "clear" in self.tel_peer.mapped_events:
            ack = self.h.mark()
            self.h.tel(self.platform("clear"))
            self.fail_on_errors(ack, ("events", "incoming", "message_patterns", "clear"))
            detail += ", acknowledgement accepted"
        return detail

    def _policy_check(self, frame: str | bytes, policy: Policy, what: str, leg: str) -> str:
        h = self.h
        model = h.session.tel if leg == TELEPHONY else h.session.ai
        before = model.state
        since = h.mark()
        (h.tel if leg == TELEPHONY else h.ai)(frame)
        violations = h.notices(since, "violation.")
        if policy.kind == "ignore":
            if violations:
                raise CheckFailed(f"{what}: policy ignore, but {violations[0].code}")
        elif policy.kind in ("warn", "reject"):
            if len(violations) != 1:
                raise CheckFailed(f"{what}: policy {policy.kind} wants one counted violation, got {len(violations)}")
            if model.state != before:
                raise CheckFailed(f"{what}: the {leg} leg moved from {before} to {model.state}")
        else:
            closes = h.closes(leg, since)
            if not closes or closes[0].code != policy.close_code:
                raise CheckFailed(f"{what}: policy close {policy.close_code}, got {closes}")
        return f"{what}: {policy} (as protocol.yaml says)"

    def t_malformed(self, leg: str) -> str:
        self.open_call()
        policy = self.specs.protocol.legs[leg].malformed
        return self._policy_check("{not json", policy, "malformed JSON", leg)

    def t_unknown(self, leg: str) -> str:
        self.open_call()
        frame = '{"cb_conformance_probe": "unknown message"}'
        peer = self.tel_peer if leg == TELEPHONY else self.ai_peer
        try:
            if peer.decode(frame, {"query": {}, "path": {}, "header": {}}) is None:
                return "unknown message taken by an ignore pattern (ignored)"
        except CallbridgeError:
            pass
        policy = self.specs.protocol.legs[leg].unknown
        return self._policy_check(frame, policy, "unknown message", leg)

    def t_order(self) -> str:
        leg = self.specs.protocol.legs[TELEPHONY]
        table = leg.table
        out = []
        # a fresh call: audio (or a start) before the handshake
        suite = Suite(self.specs, self.peer, self.doc, self.partner)
        peer = self.tel_peer
        combined = any("connected" in p.emits and "start" in p.emits for p in peer.patterns)
        if "connected" in peer.mapped_events and not combined:
            entry = table[(leg.initial, "start")]
            assert isinstance(entry, Policy)
            out.append(suite._policy_check(suite.platform("start"), entry, "start before the handshake", TELEPHONY))
            suite = Suite(self.specs, self.peer, self.doc, self.partner)
            suite.h.tel(suite.platform("connected"))
            state = leg.first_state("setup")  # where the handshake leads: awaiting the call's metadata
        else:
            state = leg.initial
        entry = table[(state, "media")]
        assert isinstance(entry, Policy)
        fmt = suite.tel_in()
        frame = suite.platform("media", audio=encode(tone(fmt.sample_rate, 20, CALLER_TONE), fmt.sample_rate, fmt))
        out.append(suite._policy_check(frame, entry, f"media in {state}", TELEPHONY))
        if suite.h.sent(AI):
            raise CheckFailed("audio before the start reached the AI")
        return "; ".join(out)

    def t_stop(self) -> str:
        self.open_call()
        since = self.h.mark()
        if "stop" in self.tel_peer.mapped_events:
            self.h.tel(self.platform("stop", reason="NORMAL_CLEARING"))
            how = "stop message"
        else:
            self.h.tel_closed()
            how = "socket close (the spec has no stop message)"
        self.h.advance(0.1)
        self.fail_on_errors(since, ("events", "incoming", "message_patterns", "stop"))
        ai_msgs = [name for name, _ in self.h.read(AI, since)]
        if "hangup" in self.ai_peer.templates and "hangup" not in ai_msgs:
            raise CheckFailed(f"the AI got no hangup after the caller's {how} (got {ai_msgs[-3:]})")
        if not self.h.closes(AI, since):
            raise CheckFailed("the AI leg was not closed after the caller left")
        return f"{how} -> AI hangup and close"

    def t_ai_hangup(self) -> str:
        if "hangup" not in self.ai_peer.mapped_events:
            raise _Skip(f"{self.ai_name} sends no hangup (closing its socket ends the call)")
        suite = Suite(self.specs, self.peer, self.doc, self.partner)
        suite.open_call()
        since = suite.h.mark()
        suite.h.ai(suite.from_ai("hangup", reason="NORMAL_CLEARING"))
        suite.fail_on_errors(since, ("hangup",))
        closes = suite.h.closes(TELEPHONY, since)
        hangup = suite.tel_peer.hangup
        if not closes or closes[0].code != hangup.close_code:
            raise CheckFailed(f"the caller's leg was not closed with {hangup.close_code}", ("hangup",))
        sent = [name for name, _ in suite.h.read(TELEPHONY, since)]
        if hangup.send and hangup.send not in sent:
            raise CheckFailed(f"the platform did not get its {hangup.send!r} message", ("hangup", "send"))
        return f"AI hangup -> platform {hangup.send + ' then ' if hangup.send else ''}close {hangup.close_code}"

    # -- AI checks ---------------------------------------------------------------------

    def a_start(self) -> str:
        self.open_call()
        if not self.h.opened:
            raise CheckFailed("the AI leg was not opened")
        opened = self.h.opened[0]
        first = self.h.read(AI)
        if not first or first[0][0] != "start":
            raise CheckFailed("the AI's first message is not its start", ("events", "outgoing", "start"))
        self.fail_on_errors(0, ("events", "outgoing", "start"))
        return f"opened {opened.url}, start sent first"

    def a_clear(self) -> str:
        if "clear" not in self.ai_peer.mapped_events:
            raise _Skip(f"{self.ai_name} has no barge-in message")
        pattern = next(p for p in self.ai_peer.patterns if "clear" in p.emits)
        since = self.h.mark()
        for frame in self._ai_audio(2000, AI_TONE):
            self.h.ai(frame)
        self.h.advance(0.5)
        at = self.h.mark()
        played = self.h.session.playout.played_ms(self.h.t) - self.h.session.audio.item_start_ms
        self.h.ai(self.from_ai("clear"))
        self.h.advance(1.0)
        self.fail_on_errors(since, (*pattern.path, "reply") if pattern.replies else ("events",))
        after = [name for name, _ in self.h.read(TELEPHONY, at)]
        if "clear" not in after or "media" in after[after.index("clear") :]:
            raise CheckFailed(f"the platform was not cleared cleanly (it got {after[:4]})")
        replies = [(n, v) for n, v in self.h.read(AI, at) if n in pattern.replies]
        detail = "barge-in cleared the platform"
        for reply in pattern.replies:
            found = [v for n, v in replies if n == reply]
            if not found:
                raise CheckFailed(f"reply {reply!r} was not sent", (*pattern.path, "reply"))
            detail += f"; answered {reply} {found[0]}"
            if "item_played_ms" in self.ai_peer.templates[reply].variables:
                cut = [v for v in found[0].values() if isinstance(v, int)]
                if not any(abs(v - played) <= 20 for v in cut):
                    raise CheckFailed(f"{reply} cut at {cut}, but the caller had heard {played:.0f} ms of that item")
        return detail


class _Skip(Exception):
    pass


def _where_from_message(peer: CompiledPeer, message: str) -> JsonPath | None:
    found = re.search(r"message '([A-Za-z_0-9]+)' needs \$\{([a-z_0-9]+)\}", message)
    if found:
        from engine.language.peer import _find_placeholder

        name, var = found.groups()
        try:
            raw = load_file(peer.file).data["events"]["outgoing"][name]
        except (KeyError, TypeError, SpecError, OSError):
            return ("events", "outgoing", name)
        return _find_placeholder(raw, var, ("events", "outgoing", name))
    return None


def _locate(doc: LoadedDocument, where: JsonPath | None, message: str) -> str:
    if where is None:
        return message
    node: Any = doc.data
    path: list[str | int] = []
    for step in where:  # the deepest part of the path that exists in the file
        exists = (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and step < len(node)
        )
        if exists:
            node = node[step]
            path.append(step)
        else:
            break
    return str(doc.error(tuple(path), message))


def _run(report: Report, suite: Suite, checks: Iterable[tuple[str, Callable[[], str]]]) -> None:
    for name, check in checks:
        try:
            detail = check()
        except _Skip as skip:
            report.lines.append(Line(name, SKIP, str(skip)))
        except CheckFailed as exc:
            report.lines.append(Line(name, FAIL, _locate(suite.doc, exc.where, exc.message)))
        except CallbridgeError as exc:
            where = _where_from_message(suite.peer, str(exc))
            report.lines.append(Line(name, FAIL, _locate(suite.doc, where, f"{type(exc).__name__}: {exc}")))
        else:
            report.lines.append(Line(name, PASS, detail))


def _load_one(path: Path, specs: SpecSet) -> tuple[CompiledPeer | None, LoadedDocument | None, list[SpecError], str]:
    kind = kind_of(path)
    doc: LoadedDocument | None = None
    try:
        doc = load_file(path)
    except SpecError as exc:
        return None, None, [exc], kind or "provider"
    if not kind:
        kind = "ai_provider" if isinstance(doc.data, dict) and "websocket" in doc.data else "provider"
    peer, errors = load_peer(path, kind, specs.protocol)
    return peer, doc, errors, kind


def run_conformance(path: str | Path, specs: SpecSet | None = None, *, partner: str | None = None) -> Report:
    """Run the lifecycle suite on one spec file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file")
    base = specs if specs is not None else load_specs()
    peer, doc, errors, kind = _load_one(path, base)
    telephony = kind != "ai_provider"
    partner = partner or ("default" if telephony else "twilio")
    report = Report(str(path), "telephony" if telephony else "ai", partner)
    if peer is None or doc is None:
        report.lines.append(Line("spec/load", FAIL, "\n      ".join(str(e) for e in errors)))
        return report
    report.lines.append(Line("spec/load", PASS, f"loads and validates ({peer.display_name})"))
    if telephony:
        providers = dict(base.providers)
        providers[peer.name] = peer
        merged = SpecSet(base.root, base.protocol, MappingProxyType(providers), base.ai_providers)
        if partner not in merged.ai_providers:
            raise UsageError(f"no AI provider spec {partner!r} to play against")
    else:
        ai = dict(base.ai_providers)
        ai[peer.name] = peer
        merged = SpecSet(base.root, base.protocol, base.providers, MappingProxyType(ai))
        if partner not in merged.providers:
            raise UsageError(f"no platform spec {partner!r} to play against")
    suite = Suite(merged, peer, doc, partner)

    def gated(name: str, check: Callable[[], str], needs: str = "meta/start") -> tuple[str, Callable[[], str]]:
        def run() -> str:
            if any(line.name == needs and line.status == FAIL for line in report.lines):
                raise _Skip(f"needs {needs}")
            return check()

        return name, run

    if telephony:
        checks = [
            ("handshake/connected", suite.t_connected),
            ("meta/start", suite.t_start),
            gated("audio/media caller->AI", suite.t_media_in),
            gated("control/dtmf (optional)", suite.t_dtmf),
            gated("audio/media AI->caller", suite.t_media_out),
            gated("control/mark (optional)", suite.t_mark),
            gated("control/clear", suite.t_clear),
            gated("lifecycle/malformed", lambda: suite.t_malformed(TELEPHONY)),
            gated("lifecycle/unknown", lambda: suite.t_unknown(TELEPHONY)),
            gated("lifecycle/order", suite.t_order),
            gated("handshake/stop", suite.t_stop),
            gated("lifecycle/ai-hangup", suite.t_ai_hangup),
        ]
    else:
        checks = [
            ("ai/start", suite.a_start),
            gated("audio/media caller->AI", suite.t_media_in, "ai/start"),
            gated("control/dtmf (optional)", suite.t_dtmf, "ai/start"),
            gated("audio/media AI->caller", suite.t_media_out, "ai/start"),
            gated("control/mark (optional)", suite.t_mark, "ai/start"),
            gated("control/clear", suite.a_clear, "ai/start"),
            gated("lifecycle/malformed", lambda: suite.t_malformed(AI), "ai/start"),
            gated("lifecycle/unknown", lambda: suite.t_unknown(AI), "ai/start"),
            gated("handshake/hangup", suite.t_stop, "ai/start"),
            gated("lifecycle/ai-hangup", suite.t_ai_hangup, "ai/start"),
        ]
    _run(report, suite, checks)
    suite.h.session.release()
    return report


def check_files(paths: Iterable[str | Path], specs: SpecSet | None = None, partner: str | None = None) -> list[Report]:
    base = specs if specs is not None else load_specs()
    return [run_conformance(p, base, partner=partner) for p in paths]


__all__ = ["Line", "Report", "SpecErrors", "check_files", "run_conformance"]
