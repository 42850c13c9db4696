"""``callbridge call``: a simulated phone call that speaks a platform's spec against a server.

:class:`CallSim` plays the platform's side of one call over a real WebSocket: handshake, start,
paced media from a WAV (or a built-in speech-like signal), DTMF, stop; it records the audio
that comes back, answers marks the way the platform would, and returns a :class:`CallReport`.
Use it from the command line (:func:`call_main`) or in tests (``await CallSim(...).run()``).

How the platform's messages are made: by default they are synthesised from the platform spec
itself (:mod:`engine.language.synth`), so any spec works without example data: each incoming
pattern read in reverse, its ``detection_pattern`` giving the constant fields (``event:
media``) and its ``extraction_map`` where each value goes (``audio -> media.payload``). What the
server sends back is read through the spec's outgoing templates (``Template.match``).
Binary-audio platforms get raw binary frames. With a recorded transcript
(``--transcript tests/vectors/twilio/call.jsonl``), the first message of each kind in it is the
example instead, and only the per-message values (audio, sequence, digit, mark...) change:
handshake and start go out exactly as the platform recorded them.

Marks follow the platform's semantics: a mark is echoed when the audio received before it has
"played" (real time from arrival), and a ``clear`` drops unplayed audio and echoes every pending
mark at once (Twilio's behaviour; platforms whose spec says ``marks: none`` get no echoes).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from engine.dsp import formats
from engine.dsp.formats import AudioFormat
from engine.errors import CallbridgeError, UsageError
from engine.language.loader import SpecSet
from engine.language.peer import CompiledPeer
from engine.language.synth import build_incoming, read_outgoing
from engine.language.yamlload import load_file

DEFAULT_URL = (
    "ws://127.0.0.1:8765/ws-adapter/{provider}/inbound/1/1/+14155550100?caller_id=+14155550123"
)
PCM = formats.PCM_16_LE


# ---------------------------------------------------------------------- messages from a spec

#: the values that change from message to message (the rest of a transcript example is kept)
VARYING = frozenset({"audio", "sequence", "chunk", "timestamp", "digit", "duration", "mark", "reason"})


class PlatformSpeaker:
    """Builds the platform's messages and reads the server's, from one platform spec (and,
    optionally, example messages from a recorded transcript)."""

    def __init__(self, peer: CompiledPeer, transcript: Path | None = None) -> None:
        self.peer = peer
        self.examples = _examples(peer, transcript) if transcript is not None else {}

    def message(self, event: str, values: Mapping[str, Any]) -> str | bytes | None:
        """The platform's message for canonical ``event`` with ``values`` (None: it has none)."""
        example = self.examples.get(event)
        if example is None or (event == "media" and self.peer.audio.inbound_payload == "binary"):
            try:
                return build_incoming(self.peer, event, dict(values))
            except UsageError:
                return None
        # The example, with this message's own values written over it where the spec reads them.
        varying = {k: v for k, v in values.items() if k in VARYING or (k == "custom" and v)}
        fresh = orjson.loads(build_incoming(self.peer, event, varying))
        return orjson.dumps(_overlay(example, fresh)).decode()

    def read(self, frame: str | bytes) -> tuple[str, dict[str, Any]]:
        """What a server frame is: ``(template name, {audio, mark, ...})`` or ``("?", {})``."""
        found = read_outgoing(self.peer, frame)
        return found if found is not None else ("?", {})


def _overlay(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _overlay(base.get(key), value)
        return merged
    return top


def _examples(peer: CompiledPeer, transcript: Path) -> dict[str, dict[str, Any]]:
    """The first JSON message of each canonical event in a recorded transcript."""
    from engine.replay import read_transcript

    found: dict[str, dict[str, Any]] = {}
    env: dict[str, Any] = {"query": {}, "path": {}, "header": {}}
    for entry in read_transcript(transcript):
        if entry.leg != "telephony" or entry.kind != "frame":
            continue
        try:
            decoded = peer.decode(entry.data, env)
            message = orjson.loads(entry.data)
        except (CallbridgeError, orjson.JSONDecodeError):
            continue
        if decoded is not None and isinstance(message, dict):
            for event in decoded.events:
                found.setdefault(event, message)
    if "start" not in found:
        raise UsageError(f"{transcript}: no {peer.name} start message in it")
    return found


# ---------------------------------------------------------------------- the call


@dataclass
class CallReport:
    """What one simulated call saw: counts, the audio the server sent back (``received``, at
    ``rate`` Hz), how it ended, and anything it could not read. :meth:`CallSim.run` fills it."""

    frames_sent: int = 0
    frames_received: int = 0
    other_received: int = 0
    marks_answered: int = 0
    clears: int = 0
    first_audio_s: float | None = None
    duration_s: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    received: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    rate: int = 8000
    unknown: list[str] = field(default_factory=list)
    stream_ids: set[str] = field(default_factory=set)  # as the server's media messages carried them
    timeline: list[str] = field(default_factory=list)  # media | mark | clear, in arrival order
    heard_ms_at_clear: list[float] = field(default_factory=list)  # audio the caller had heard at each clear

    @property
    def clean(self) -> bool:
        """Whether the server closed the call normally (1000 or 1001): the CLI's exit status."""
        return self.close_code in (1000, 1001)

    def summary(self) -> str:
        """A few lines for a person: duration, close, frames each way, time to first audio."""
        first = f"{self.first_audio_s * 1000:.0f} ms" if self.first_audio_s is not None else "none"
        return (
            f"call: {self.duration_s:.2f} s, closed {self.close_code} {self.close_reason!r}\n"
            f"  frames sent {self.frames_sent}, media received {self.frames_received} "
            f"({len(self.received) / self.rate:.2f} s of audio), "
            f"other messages {self.other_received}\n"
            f"  time to first audio {first}, marks answered {self.marks_answered}, "
            f"clears {self.clears}"
        )


class CallSim:
    """One simulated platform call. ``audio`` is mono int16 at ``rate`` Hz."""

    def __init__(
        self,
        specs: SpecSet,
        provider: str,
        url: str,
        audio: np.ndarray,
        rate: int,
        *,
        dtmf: str = "",
        tail_s: float = 1.0,
        progress: bool = False,
        transcript: Path | None = None,
        caller: str = "+14155550123",
        callee: str = "+14155550100",
        headers: Mapping[str, str] | None = None,
        ssl: Any = None,
        custom: Mapping[str, str] | None = None,
    ) -> None:
        if provider not in specs.providers:
            raise UsageError(
                f"unknown provider {provider!r} (known: {', '.join(sorted(specs.providers))})"
            )
        self.peer = specs.providers[provider]
        self.speaker = PlatformSpeaker(self.peer, transcript)
        self.url = url
        self.audio, self.rate = audio, rate
        self.dtmf, self.tail_s, self.progress = dtmf, tail_s, progress
        self.caller, self.callee = caller, callee
        self.headers = dict(headers or {})  # on the upgrade: credentials, as the platform sends them
        self.ssl = ssl  # for wss://: an ssl.SSLContext trusting the server's CA (None: the default)
        audio_spec = self.peer.audio
        self.fmt_in: AudioFormat = audio_spec.inbound  # what the platform sends
        self.fmt_out: AudioFormat = audio_spec.outbound or audio_spec.inbound
        self.chunk_ms = audio_spec.chunk_ms or 20.0
        self.report = CallReport(
            rate=self.fmt_out.sample_rate if self.fmt_out.encoding != formats.OPUS else 48000
        )
        self._pieces: list[bytes] = []
        self._play_end = 0.0
        self._first_sent_at: float | None = None  # time.monotonic() of the first media sent
        self._first_audio_at: float | None = None  # ... and of the first media received
        self._received_s = 0.0
        self._pending_marks: list[tuple[str, asyncio.TimerHandle]] = []
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        sid = uuid.uuid4().hex
        self.values: dict[str, Any] = {
            "stream_id": "MZ" + sid,
            "call_id": "CA" + sid[::-1],
            "account_id": "ACsim" + sid[:8],
            "other_leg_call_id": "CA" + sid[::-1],
            "direction": "inbound",
            "from": caller,
            "to": callee,
            "custom": dict(custom or {}),
            "track": "inbound",
            "status": "connected",
            "protocol": "Call",
            "version": "1.0.0",
            "encoding": self._encoding_name(),
            "sample_rate": self.fmt_in.sample_rate,
            "channels": self.fmt_in.channels,
            "bit_depth": formats.BIT_DEPTH[self.fmt_in.encoding],
        }

    def _encoding_name(self) -> str:
        raw = load_file(self.peer.file).data.get("audio", {})
        return str(raw.get("encoding", self.fmt_in.encoding))

    # -------------------------------------------------------------- audio

    def _frames(self) -> list[bytes]:
        from engine.dsp.transcoder import Transcoder

        src = AudioFormat(PCM, self.rate, 1)
        pcm = np.asarray(self.audio, dtype="<i2").tobytes()
        step = int(self.rate * self.chunk_ms / 1000) * 2
        frames: list[bytes] = []
        if self.fmt_in.encoding == formats.OPUS:
            t = Transcoder(src, self.fmt_in, opus_frame_ms=self.chunk_ms)
            for i in range(0, len(pcm), step):
                frames.extend(t.convert_packets(pcm[i : i + step]))
            return frames
        t = Transcoder(src, self.fmt_in)
        out_step = self.fmt_in.frame_bytes(self.chunk_ms)
        stream = b"".join(t.convert(pcm[i : i + step]) for i in range(0, len(pcm), step))
        frames = [stream[i : i + out_step] for i in range(0, len(stream), out_step)]
        if frames and len(frames[-1]) < out_step:
            pad = _silence(self.fmt_in)
            frames[-1] += pad * ((out_step - len(frames[-1])) // len(pad))
        return frames

    def _silence_frame(self) -> bytes:
        if self.fmt_in.encoding == formats.OPUS:
            from engine.dsp.transcoder import Transcoder

            t = Transcoder(AudioFormat(PCM, 48000, 1), self.fmt_in, opus_frame_ms=self.chunk_ms)
            return t.convert_packets(bytes(2 * int(48 * self.chunk_ms)))[0]
        return _silence(self.fmt_in) * self.fmt_in.samples(self.chunk_ms)

    # -------------------------------------------------------------- the wire

    def _next(self, **extra: Any) -> dict[str, Any]:
        self._seq += 1
        values = dict(self.values)
        values["sequence"] = self._seq
        values.update(extra)
        return values

    async def _send(self, ws: ClientConnection, event: str, **extra: Any) -> None:
        message = self.speaker.message(event, self._next(**extra))
        if message is None:
            return
        await ws.send(message)

    async def run(self) -> CallReport:
        """Dial the server, play the whole call (start, audio, DTMF, a silent tail, stop) in real
        time, answering marks and clears as the platform would, and report what came back.

        Raises :exc:`~engine.errors.UsageError` when the server cannot be reached or refuses
        the upgrade; a call the server ends early is reported, not raised.
        """
        loop = asyncio.get_running_loop()
        frames = self._frames()
        silence = self._silence_frame()
        tail = [silence] * int(self.tail_s * 1000 / self.chunk_ms)
        started = loop.time()
        report = self.report
        extra: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
        try:
            ws = await connect(
                self.url,
                additional_headers=self.headers or None,
                subprotocols=list(self.peer.connection.subprotocols) or None,  # type: ignore[arg-type]
                compression=None,
                open_timeout=10,
                max_size=self.peer.connection.max_message_bytes,
                proxy=None,
                ping_interval=None,
                **extra,
            )
        except websockets.exceptions.InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
            raise UsageError(
                f"server refused the call: HTTP {exc.response.status_code}: {body}"
            ) from None
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise UsageError(f"cannot connect to {self.url}: {exc}") from None
        receiver = loop.create_task(self._receive(ws, loop))
        try:
            await self._send(ws, "connected")
            if not any("connected" in p.emits and "start" in p.emits for p in self.peer.patterns):
                await self._send(ws, "start")  # (else the handshake was the start: Plivo, Vonage, ...)
            plan: list[tuple[str, Any]] = [("media", f) for f in frames]
            plan += [("dtmf", d) for d in self.dtmf]
            plan += [("media", f) for f in tail]
            t0 = loop.time()
            step = self.chunk_ms / 1000.0
            total = len(plan)
            chunk = 0
            for index, (kind, payload) in enumerate(plan):
                if kind == "media":
                    await asyncio.sleep(
                        max(0.0, t0 + chunk * step - loop.time())
                    )  # absolute deadlines
                    chunk += 1
                    if self._first_sent_at is None:
                        self._first_sent_at = time.monotonic()
                    await self._send(
                        ws,
                        "media",
                        audio=payload,
                        chunk=chunk,
                        timestamp=int((chunk - 1) * self.chunk_ms),
                    )
                    report.frames_sent += 1
                else:
                    await self._send(ws, "dtmf", digit=payload, duration=100)
                if self.progress and index % 10 == 0:
                    _progress(index + 1, total, report)
            if "stop" in self.peer.mapped_events:
                await self._send(ws, "stop", reason="NORMAL_CLEARING")
            else:
                await ws.close(1000, "caller hung up")  # the platform has no stop: hanging up closes
        except websockets.exceptions.ConnectionClosed:
            pass  # the server hung up first: that is a result, not an error
        try:
            with _suppress_timeout():
                await asyncio.wait_for(asyncio.shield(receiver), 5.0)
        finally:
            if self.progress:
                sys.stderr.write("\r\x1b[K")
            if not receiver.done():
                await ws.close()
                with _suppress_timeout():
                    await asyncio.wait_for(receiver, 2.0)
            for _, handle in self._pending_marks:
                handle.cancel()
        report.duration_s = loop.time() - started
        if self._first_audio_at is not None and self._first_sent_at is not None:
            # time.monotonic(): the loop's clock is cached per iteration, too coarse for this
            report.first_audio_s = self._first_audio_at - self._first_sent_at
        rcvd = ws.protocol.close_rcvd
        report.close_code = rcvd.code if rcvd is not None else None
        report.close_reason = rcvd.reason if rcvd is not None else ""
        report.received = self._decode_received()
        return report

    async def _receive(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        report = self.report
        try:
            async for frame in ws:
                name, values = self.speaker.read(frame)
                now = loop.time()
                if name in ("media", "mark", "clear"):
                    report.timeline.append(name)
                    if "stream_id" in values:
                        report.stream_ids.add(str(values["stream_id"]))
                if name == "media" and "audio" in values:
                    audio = values["audio"]
                    report.frames_received += 1
                    self._received_s += self._duration(audio)
                    if self._first_audio_at is None:
                        self._first_audio_at = time.monotonic()
                    self._pieces.append(audio)
                    self._play_end = max(self._play_end, now) + self._duration(audio)
                elif name == "mark" and "mark" in values:
                    self._schedule_mark(ws, loop, str(values["mark"]), max(self._play_end, now))
                elif name == "clear":
                    report.clears += 1
                    ahead = max(0.0, self._play_end - now)
                    report.heard_ms_at_clear.append((self._received_s - ahead) * 1000.0)
                    self._play_end = now  # unplayed audio is gone
                    for mark, handle in self._pending_marks:
                        handle.cancel()
                        self._spawn(self._answer(ws, mark))
                    self._pending_marks.clear()
                else:
                    report.other_received += 1
                    if len(report.unknown) < 5:
                        report.unknown.append(
                            frame[:120] if isinstance(frame, str) else f"binary {len(frame)} B"
                        )
        except websockets.exceptions.ConnectionClosed:
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _duration(self, audio: bytes) -> float:
        if self.fmt_out.encoding == formats.OPUS:
            return self.chunk_ms / 1000.0
        return len(audio) / (self.fmt_out.bytes_per_ms * 1000.0)

    def _schedule_mark(
        self, ws: ClientConnection, loop: asyncio.AbstractEventLoop, mark: str, at: float
    ) -> None:
        if self.peer.marks.mode != "native":
            return
        box: list[asyncio.TimerHandle] = []
        box.append(loop.call_at(at, lambda: self._spawn(self._answer(ws, mark, box[0]))))
        self._pending_marks.append((mark, box[0]))

    async def _answer(self, ws: ClientConnection, mark: str, handle: Any = None) -> None:
        if handle is not None:
            self._pending_marks = [(m, h) for m, h in self._pending_marks if h is not handle]
        try:
            await self._send(ws, "mark", mark=mark)
            self.report.marks_answered += 1
        except websockets.exceptions.ConnectionClosed:
            pass

    def _decode_received(self) -> np.ndarray:
        if not self._pieces:
            return np.zeros(0, dtype=np.int16)
        from engine.dsp.transcoder import Transcoder

        fmt = self.fmt_out
        if fmt.encoding == formats.OPUS:
            t = Transcoder(fmt, AudioFormat(PCM, 48000, 1))
            pcm = b"".join(t.convert(p) for p in self._pieces)
        else:
            t = Transcoder(fmt, AudioFormat(PCM, fmt.sample_rate, 1))
            pcm = t.convert(b"".join(self._pieces))
        return np.frombuffer(pcm, dtype="<i2").copy()


def _silence(fmt: AudioFormat) -> bytes:
    if fmt.encoding == formats.MULAW:
        return b"\xff" * fmt.channels
    if fmt.encoding == formats.ALAW:
        return b"\xd5" * fmt.channels
    if fmt.encoding == formats.PCM_8_U:
        return b"\x80" * fmt.channels
    return bytes(fmt.bytes_per_sample * fmt.channels)


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, TimeoutError)


def _progress(done: int, total: int, report: CallReport) -> None:
    width = 30
    filled = int(width * done / max(1, total))
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} sent, "
        f"{report.frames_received} received, {report.marks_answered} marks"
    )
    sys.stderr.flush()


# ---------------------------------------------------------------------- the command


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _pair(text: str, sep: str, flag: str) -> tuple[str, str]:
    name, found, value = text.partition(sep)
    if not found or not name.strip():
        raise UsageError(f"{flag} wants NAME{sep}VALUE, not {text!r}")
    return name.strip(), value.strip()


def twilio_signature(url: str, token: str) -> str:
    """``X-Twilio-Signature`` for an upgrade to ``url``, as Twilio computes it (HMAC-SHA1 of the
    URL, keyed by the account's auth token; a GET has no parameters to append)."""
    import base64
    import hashlib
    import hmac

    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def call_main(args: Any) -> int:
    """``callbridge call``: run one simulated call from parsed arguments and print its report.

    Exit status 0 when the server closed the call cleanly, 1 otherwise.
    """
    from engine.io.wav import read_wav, speechlike, write_wav
    from engine.language.loader import load_specs

    specs = load_specs(Path(args.specs) if args.specs else None)
    provider = args.provider
    url = args.url or DEFAULT_URL.format(provider=provider)
    if args.audio:
        audio, rate = read_wav(args.audio)
    else:
        rate = 8000
        audio = speechlike(rate, args.seconds)
    headers = dict(_pair(text, ":", "--header") for text in getattr(args, "header", None) or [])
    custom = dict(_pair(text, "=", "--param") for text in getattr(args, "param", None) or [])
    token = getattr(args, "twilio_token", None)
    if token:
        headers["X-Twilio-Signature"] = twilio_signature(url, token)
    context = None
    if getattr(args, "cafile", None):
        import ssl

        context = ssl.create_default_context(cafile=args.cafile)
    sim = CallSim(
        specs,
        provider,
        url,
        audio,
        rate,
        dtmf=args.dtmf or "",
        tail_s=args.tail,
        progress=sys.stderr.isatty(),
        transcript=Path(args.transcript) if args.transcript else None,
        headers=headers,
        ssl=context,
        custom=custom,
    )
    report = _run(sim.run())
    if args.out:
        write_wav(args.out, report.received, report.rate)
    print(report.summary())
    if args.out:
        print(
            f"  wrote {args.out} ({len(report.received) / report.rate:.2f} s at {report.rate} Hz)"
        )
    for line in report.unknown:
        print(f"  unrecognised from server: {line}")
    return 0 if report.clean else 1
