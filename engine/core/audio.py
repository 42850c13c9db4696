"""The call's audio: conversion both ways, paced playout, marks, barge-in.

:class:`AudioPath` owns everything that touches audio: the uplink converter (caller to AI),
the downlink converter and framer (AI to caller, re-framed to the platform's chunk rules), the
playout clock that releases the AI's audio at most a spec-declared lead ahead of real time, the
mark ledger, the caller's early audio (kept while the AI leg opens) and media reordering where
a platform spec asks for it. It writes what it sends to the call's :class:`Outbox`.

It never decides whether audio may flow: the session asks the protocol (a media state, a live
leg) and calls in. Every method takes ``now`` where time matters; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from math import inf
from typing import Any

from engine.core.commands import AI, TELEPHONY, Send
from engine.core.legs import Leg, Outbox
from engine.core.pipeline import Converter, make_converter
from engine.core.playout import CLEARED, PLAYED, Mark, MarkLedger, Playout
from engine.core.reorder import Reorder
from engine.dsp import formats
from engine.dsp.formats import AudioFormat
from engine.dsp.framer import Framer
from engine.language.peer import CompiledPeer
from engine.language.templates import Template

EARLY_AUDIO_MS = 2000  # caller audio kept while the AI leg opens
TAIL_MARGIN_S = 0.04  # send a held partial chunk this long before the platform runs dry
TAIL_WAIT_S = 0.06  # ... or this long after the AI's last audio when the platform is idle
#: the byte that is silence in each 8-bit encoding (0 for the rest)
SILENCE_BYTE = {formats.MULAW: 0xFF, formats.ALAW: 0xD5, formats.PCM_8_U: 0x80}


class AudioPath:
    """One call's audio, both ways. The session makes one per call and feeds it."""

    def __init__(
        self, tel: Leg, ai: Leg, outbox: Outbox, stats: dict[str, int], playout_lead_ms: int | None = None
    ) -> None:
        self.tel = tel
        self.ai = ai
        self.outbox = outbox
        self.stats = stats
        peer = tel.peer
        self.tel_in: AudioFormat = peer.audio.inbound
        self.tel_out: AudioFormat = peer.audio.outbound or peer.audio.inbound
        self.ai_format: AudioFormat = ai.peer.audio.inbound
        self.uplink: Converter | None = None
        self.downlink: Converter | None = None
        self.framer: Framer | None = None
        # the media templates, set at start (typed: the per-frame render is a native call)
        self._ai_media: Template = ai.peer.templates["media"]
        self._tel_media: Template = tel.peer.templates["media"]
        self._ai_ms_per_byte = 0.0
        self._last_ai_audio = -inf
        self._early: deque[bytes] = deque()
        self._early_bytes = 0
        self.marks_native = peer.marks.mode == "native"
        self.clear_native = peer.clear.mode == "native" and "clear" in peer.templates
        self.ledger = MarkLedger(peer.marks.timeout_ms / 1000.0, peer.marks.max_pending)
        self.playout = Playout(
            lead_ms=float(playout_lead_ms if playout_lead_ms is not None else peer.audio.playout_lead_ms),
            max_buffer_ms=float(peer.audio.max_buffer_ms),
            on_overrun=peer.audio.on_overrun,
        )
        self.reorder: Reorder | None = None
        if peer.audio.reorder_by is not None:
            self.reorder = Reorder(
                peer.audio.reorder_by, peer.audio.reorder_window, lambda b: len(b) / self.tel_in.bytes_per_ms
            )
        self._last_caller_frame = 0  # bytes in the last caller frame (the size of a concealed one)
        # The AI's audio items (x_item_id): where the current one starts in the playout stream.
        self.item_id: Any = None
        self.item_start_ms = 0.0

    @property
    def started(self) -> bool:
        """The call's formats are fixed and its converters built (the AI leg was asked for)."""
        return self.downlink is not None

    # ------------------------------------------------------------------ set-up

    def accept_platform_format(self, fields: Any) -> str | None:
        """Take the platform's announced format from a start message's fields.

        Returns ``None`` when the platform spec accepts it (it is then the caller's format),
        else why not."""
        audio = self.tel.peer.audio
        base = audio.inbound
        encoding, rate, channels = base.encoding, base.sample_rate, base.channels
        if "encoding" in fields:
            parsed = formats.parse_encoding(str(fields["encoding"]))
            if parsed is None:
                return f"unknown encoding {fields['encoding']!r} in start"
            encoding, rate = parsed[0], parsed[1] or rate
        rate = int(fields.get("sample_rate") or rate)
        channels = int(fields.get("channels") or channels)
        if (
            encoding not in audio.accept_encodings
            or rate not in audio.accept_rates
            or channels not in audio.accept_channels
        ):
            return f"start announces {encoding}/{rate}/{channels}ch, which {self.tel.peer.name} does not accept"
        if encoding in (formats.MULAW, formats.ALAW) and rate != 8000:
            return f"start announces {encoding} at {rate} Hz; G.711 is 8000 Hz only"
        self.tel_in = AudioFormat(encoding, rate, channels)
        self.tel_out = audio.outbound if audio.outbound is not None else self.tel_in
        return None

    def start(self, call_id: str) -> None:
        """Build both converters once the formats are fixed (the caller's start)."""
        self.uplink = make_converter(self.tel_in, self.ai_format, call_id=call_id, leg=AI)
        self.downlink = make_converter(self.ai_format, self.tel_out, call_id=call_id, leg=TELEPHONY)
        self._ai_media = self.ai.peer.templates["media"]
        self._tel_media = self.tel.peer.templates["media"]
        self._ai_ms_per_byte = 1.0 / self.ai_format.bytes_per_ms if self.ai_format.bytes_per_ms else 0.0

    def retarget(self, peer: CompiledPeer, call_id: str) -> None:
        """Follow a new AI provider's format (a fallback before the AI leg opened)."""
        self.ai_format = peer.audio.inbound
        if self.started:
            self.start(call_id)

    # ------------------------------------------------------------------ caller to AI

    def forward_media(self, fields: Any) -> None:
        """A caller media frame the protocol lets through: reorder where declared, then forward."""
        reorder = self.reorder
        if reorder is None:
            self.forward(fields["audio"])
            return
        key = fields.get(reorder.by)
        for item in reorder.push(int(key) if key is not None else None, fields["audio"]):
            self._reordered_item(item)

    def skip_sequence(self, sequence: int) -> None:
        """A non-media message carried a media sequence number: the reorder window moves past it."""
        reorder = self.reorder
        if reorder is not None and reorder.by == "sequence":
            for item in reorder.skip(sequence):
                self._reordered_item(item)

    def forward(self, audio: bytes) -> None:
        """Convert caller audio and send it to the AI, or keep it (bounded) while the AI leg opens."""
        ai = self.ai
        if ai.state in ai.media_states and self.uplink is not None:
            ctx = ai.ctx
            tmpl = self._ai_media
            ms_per_byte = self._ai_ms_per_byte
            binary = tmpl.binary
            items = self.outbox.items
            for chunk in self.uplink.convert(audio):
                if not binary:
                    ctx["seq"] += 1
                ctx["media_seq"] += 1
                items.append(Send(AI, tmpl.render({"audio": chunk}, ctx), binary))
                ctx["media_timestamp"] += len(chunk) * ms_per_byte if ms_per_byte else ai.peer.opus_frame_ms
            ai.frames_out += 1
        elif not ai.finished:
            self._early.append(audio)
            self._early_bytes += len(audio)
            limit = self.tel_in.frame_bytes(EARLY_AUDIO_MS) if self.tel_in.encoding != formats.OPUS else 1 << 20
            while self._early_bytes > limit and self._early:
                self._early_bytes -= len(self._early.popleft())

    def flush_early(self) -> None:
        """Send the AI the caller audio kept while its leg was opening."""
        early, self._early = self._early, deque()
        self._early_bytes = 0
        for audio in early:
            self.forward(audio)

    def flush_reorder(self) -> None:
        """Forward whatever the reorder window still holds (the caller is gone)."""
        if self.reorder is not None:
            for audio in self.reorder.flush():
                self.forward(audio)

    def _reordered_item(self, item: bytes | int) -> None:
        if type(item) is bytes:
            self._last_caller_frame = len(item)
            self.forward(item)
            return
        assert isinstance(item, int)
        reorder = self.reorder
        assert reorder is not None
        conceal = self.tel.peer.audio.reorder_conceal
        self.outbox.note(
            "media.gap",
            TELEPHONY,
            f"caller audio {reorder.by} gap of {item} never arrived within the reorder window"
            + ("; concealed with silence" if conceal else ""),
            "warning",
        )
        fmt = self.tel_in
        if not conceal or fmt.encoding == formats.OPUS:
            return
        silence = bytes([SILENCE_BYTE.get(fmt.encoding, 0)])
        if reorder.by == "timestamp":
            frames, size = 1, fmt.frame_bytes(min(item, 20 * reorder.window))
        else:
            frames, size = min(item, reorder.window), self._last_caller_frame or fmt.frame_bytes(20)
        for _ in range(frames):
            self.forward(silence * size)  # through the uplink converter: its state stays continuous

    # ------------------------------------------------------------------ AI to caller

    def play(self, audio: bytes, now: float) -> bool:
        """Convert the AI's audio, queue it for paced playout and release what is due.

        ``False`` when the playout cap overflowed and the platform spec says to close."""
        if self.downlink is None:
            return True
        self._last_ai_audio = now
        if self.framer is None and self.tel_out.encoding != formats.OPUS:
            self.framer = self._make_framer()
        framer = self.framer
        playout = self.playout
        for chunk in self.downlink.convert(audio):
            for frame in framer.push(chunk) if framer is not None else (chunk,):
                if not playout.push(frame, self._duration_ms(frame, self.tel_out)):
                    self.outbox.note(
                        "playout.overrun",
                        TELEPHONY,
                        f"AI audio beyond the {playout.max_buffer_ms:.0f} ms playout cap ({playout.on_overrun})",
                        "warning",
                    )
                    if playout.on_overrun == "close":
                        return False
        self.pump(now)
        if playout.queued_ms or len(self.ledger) or (framer is not None and framer.pending_bytes):
            self.outbox.reschedule()  # something waits for a later time
        return True

    def _make_framer(self) -> Framer:
        audio = self.tel.peer.audio
        framing = audio.framing
        frame_ms = framing.frame_ms
        if frame_ms is None and not (framing.multiple_of_bytes or framing.min_bytes):
            frame_ms = audio.chunk_ms
        return Framer(
            self.tel_out,
            frame_ms=frame_ms,
            multiple_of_bytes=framing.multiple_of_bytes,
            min_bytes=framing.min_bytes,
            max_bytes=framing.max_bytes,
        )

    def _duration_ms(self, data: bytes, fmt: AudioFormat) -> float:
        if fmt.encoding == formats.OPUS:
            return self.ai.peer.opus_frame_ms if fmt is self.ai_format else self.tel.peer.audio.chunk_ms
        return len(data) / fmt.bytes_per_ms

    def pump(self, now: float) -> None:
        """Release what the playout clock allows; settle marks whose time came."""
        tel = self.tel
        ctx = tel.ctx
        media = self._tel_media
        items = self.outbox.items
        for item in self.playout.release(now):
            if isinstance(item, Mark):
                if self.marks_native:
                    self.outbox.send(tel, "mark", {"mark": item.wire})
            else:
                # The media fast path of Outbox.send, inlined: one per 20 ms frame per call.
                if not media.binary:
                    ctx["seq"] += 1
                ctx["media_seq"] += 1
                items.append(Send(TELEPHONY, media.render({"audio": item.data}, ctx), media.binary))
                ctx["media_timestamp"] += item.duration_ms
                tel.frames_out += 1
        if len(self.ledger):
            for mark in self.ledger.due(now, emulated=not self.marks_native):
                self.answer_mark(mark)
        self.ai.ctx["played_ms"] = ctx["played_ms"] = int(self.playout.played_ms(now))

    def answer_mark(self, mark: Mark) -> None:
        """Tell the AI how one of its marks ended (played, cleared, timed out)."""
        outcome = mark.outcome or PLAYED
        self.stats["marks_played" if outcome == PLAYED else "marks_cleared"] += outcome in (PLAYED, CLEARED)
        fields = {"mark": mark.name, "wire": mark.wire}
        self.outbox.note(f"mark.{outcome}", TELEPHONY, f"mark {mark.name!r} {outcome}", "debug", fields)
        ai = self.ai
        name = f"mark_{outcome}" if f"mark_{outcome}" in ai.peer.templates else "mark"
        if ai.live:
            self.outbox.send(ai, name, {"mark": mark.name, "mark_status": outcome})

    def queue_mark(self, name: str, now: float) -> None:
        """Place an AI mark after the audio queued so far (refused past the ledger's bound)."""
        ledger = self.ledger
        if len(ledger) >= ledger.max_pending:
            self.outbox.note("mark.refused", AI, f"more than {ledger.max_pending} marks pending", "warning")
            return
        self.playout.add_mark(ledger.create(name, self.playout.position_ms))
        self.outbox.reschedule()
        self.pump(now)

    def resolve_mark(self, wire: str, status: str) -> None:
        """The platform echoed a mark: settle it (cleared where the platform says so)."""
        status = status.lower()
        outcome = CLEARED if status in ("cleared", "clear", "canceled", "cancelled", "flushed") else PLAYED
        mark = self.ledger.settle(wire, outcome)
        if mark is not None:
            self.answer_mark(mark)

    def note_item(self, item_id: Any) -> None:
        """The AI's audio now belongs to item ``item_id`` (OpenAI's item_id): where it starts."""
        if item_id != self.item_id:
            self.item_id = item_id
            pending = self.framer.pending_bytes if self.framer is not None else 0
            per_ms = self.tel_out.bytes_per_ms
            self.item_start_ms = self.playout.position_ms + (pending / per_ms if per_ms else 0.0)

    def barge_in(self, now: float) -> None:
        """Drop every unplayed frame, here and at the platform, and settle pending marks as cleared.

        The platform's clear is the first command: every microsecond before it reaches the
        platform is audio the caller may still hear; the bookkeeping after it changes nothing in it."""
        tel, ai = self.tel, self.ai
        if self.clear_native and tel.state in tel.media_states:
            self.outbox.send(tel, "clear", {})
        playout, framer = self.playout, self.framer
        if self.item_id is not None:
            # The cut point within the current AI audio item: what the caller heard of it.
            ai.ctx["item_played_ms"] = max(0, round(playout.played_ms(now) - self.item_start_ms))
            held = framer is not None and framer.pending_bytes
            if playout.queued_ms <= 0 and playout.ahead_ms(now) <= 0 and not held:
                ai.ctx.pop("x_item_id", None)  # that item was heard to its end: nothing to truncate
            self.item_id = None
        playout.clear(now, platform_flushes=self.clear_native)
        if self.downlink is not None:
            self.downlink.reset()
        if framer is not None:
            framer.clear()
        self.stats["clears"] += 1
        for mark in self.ledger.settle_all(CLEARED):
            self.answer_mark(mark)
        played = int(playout.played_ms(now))
        ai.ctx["played_ms"] = tel.ctx["played_ms"] = played
        self.outbox.note("clear", AI, f"barge-in: playout flushed at {played} ms heard", "info", {"played_ms": played})

    # ------------------------------------------------------------------ time

    def next_deadline(self, now: float) -> float:
        """The next time the playout, the marks or a held partial chunk need :meth:`on_timer`."""
        if self.downlink is None:
            return inf
        return min(
            self.playout.next_deadline(now), self.ledger.next_deadline(not self.marks_native), self._framer_deadline()
        )

    def _framer_deadline(self) -> float:
        """When a partial platform chunk held by the framer must go out, padded with silence.

        Platforms with a minimum chunk (Exotel 3.2 kB, Genesys 1600 B) would otherwise keep the
        end of an AI utterance until the AI speaks again. Holding it is right only while more
        audio may still complete the chunk without the caller noticing: so it goes once the
        playout has nothing else queued and the platform is about to run dry, or, when the
        platform is idle, shortly after the AI's last audio.
        """
        framer = self.framer
        if framer is None or not framer.pending_bytes or self.playout.queued_ms > 0:
            return inf
        return max(self.playout.drains_at - TAIL_MARGIN_S, self._last_ai_audio + TAIL_WAIT_S)

    def on_timer(self, now: float) -> None:
        """Send a held partial chunk whose time came, then release what the clock allows."""
        if self.downlink is None:
            return
        framer = self.framer
        if framer is not None and self._framer_deadline() <= now:
            for frame in framer.flush(pad=True):
                self.playout.push(frame, self._duration_ms(frame, self.tel_out))
        self.pump(now)
