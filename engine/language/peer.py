"""Compile a peer spec (a telephony platform or an AI backend) into a frozen :class:`CompiledPeer`.

A compiled peer knows how to turn one WebSocket frame from that peer into canonical events
(:meth:`CompiledPeer.decode`), how to render each outgoing message (``templates``), and what
audio the peer carries and how (``inbound``/``outbound``, framing, playout, marks, clear).

This module is the compile-time half: it checks a schema-valid document against the protocol
and reports every mistake with its place (:func:`compile_peer`). The per-frame half, the
:class:`~engine.language.decode.Decoder` it builds from the spec's patterns, lives in
:mod:`engine.language.decode`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.auth.schemes import AuthScheme, compile_schemes
from engine.dsp import formats
from engine.dsp.formats import AudioFormat
from engine.errors import ExpressionError, FieldError, SpecError, TemplateSyntaxError
from engine.language import vocabulary as vocab
from engine.language.decode import Decoded, Decoder, Pattern
from engine.language.extract import FieldRule, compile_condition, compile_rule
from engine.language.paths import MISSING
from engine.language.protocol import CompiledProtocol
from engine.language.templates import Template
from engine.language.yamlload import JsonPath, LoadedDocument

#: the AI Provider protocol: the AI side's formats and the one rate each must run at
AI_FORMATS: dict[str, AudioFormat] = {
    "pcm16": AudioFormat(formats.PCM_16_LE, 24000),
    "g711_ulaw": AudioFormat(formats.MULAW, 8000),
    "opus": AudioFormat(formats.OPUS, 48000),
}


#: the adapter guide's "Audio Configuration Parameters" example, used when a spec has no audio block
GUIDE_AUDIO = AudioFormat(formats.PCM_16_LE, 8000, 1)

#: outgoing messages derived from incoming patterns when a spec declares none (see mirror_templates)
MIRRORED_EVENTS = ("media", "mark", "clear")


@dataclass(frozen=True, slots=True)
class Framing:
    """How the audio callbridge sends the peer must be cut (``audio.framing``).

    Either ``frame_ms`` (every message that long: Vonage's 20 ms) or byte rules
    (``multiple_of_bytes``, ``min_bytes``, ``max_bytes``: Exotel, Genesys); all ``None`` when the
    peer takes audio in any size. The call core builds an :class:`~engine.dsp.framer.Framer` from it.
    """

    frame_ms: float | None = None
    multiple_of_bytes: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None

    @property
    def any(self) -> bool:
        """Whether the spec sets any rule; ``False``: send audio as it comes."""
        return any(v is not None for v in (self.frame_ms, self.multiple_of_bytes, self.min_bytes, self.max_bytes))


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """What audio the peer carries and how (the spec's ``audio`` block, defaults filled in).

    ``inbound`` is what the peer sends unless its start message negotiates one of the
    ``accept_*`` alternatives; ``outbound`` is what it takes back (``None``: the negotiated
    inbound format). ``*_payload`` says whether audio travels as base64 in JSON or as binary
    frames. The rest tunes the call's playout (lead, buffer cap, what gives on overrun) and the
    reordering of caller frames (``reorder_by`` a field name, ``None`` when frames arrive in order).
    """

    inbound: AudioFormat  # what the peer sends by default
    accept_encodings: frozenset[str]
    accept_rates: frozenset[int]
    accept_channels: frozenset[int]
    inbound_payload: str  # base64 | binary
    chunk_ms: float
    outbound: AudioFormat | None  # None: the same as the (negotiated) inbound format
    outbound_payload: str
    framing: Framing
    playout_lead_ms: int
    max_buffer_ms: int
    on_overrun: str
    reorder_by: str | None
    reorder_window: int
    reorder_conceal: bool = True


@dataclass(frozen=True, slots=True)
class MarksSpec:
    """How marks (the AI's "tell me when this audio has played") work on this peer.

    ``native``: the platform echoes a mark message once the audio before it has played;
    ``emulated``: callbridge settles marks from its own playout clock; ``none``: no marks.
    ``echo_on_clear`` means echoes that follow a clear say cleared, not played (Twilio).
    """

    mode: str  # native | emulated | none
    echo_on_clear: bool
    timeout_ms: int
    max_pending: int


@dataclass(frozen=True, slots=True)
class ClearSpec:
    """How a barge-in drops the audio the peer has queued.

    ``native``: send the peer's ``clear`` message; ``emulated``: callbridge drops only what it
    still holds. ``acknowledged``: the peer answers a clear with a message of its own.
    """

    mode: str  # native | emulated
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class HangupSpec:
    """How callbridge ends the call with the peer: the message to send first (``send``, an
    outgoing template name, or ``None``), then the WebSocket close code and reason."""

    send: str | None
    close_code: int
    close_reason: str


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """The WebSocket the peer opens to callbridge: subprotocols to accept, compression
    (``none`` or ``deflate``), and the size limits of an incoming message and of an outgoing
    control text (``max_text_bytes``, ``None`` for no limit; Asterisk's is 128)."""

    subprotocols: tuple[str, ...]
    compression: str
    max_message_bytes: int
    max_text_bytes: int | None


@dataclass(frozen=True, slots=True)
class WebsocketSpec:
    """Where callbridge connects for an AI backend: the URL, the HTTP headers of the upgrade
    request, and the subprotocols to offer; template variables in them are filled per call."""

    url: str
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...]


@dataclass(frozen=True)
class CompiledPeer:
    """One peer spec, compiled and checked: what a call needs to speak with that platform or AI.

    Get one from a :class:`~engine.language.loader.SpecSet` (``specs.providers["twilio"]``,
    ``specs.ai_providers["default"]``), never by building it: :func:`compile_peer` is the only
    maker, and it reports every mistake of the spec instead. Read-only, shared by all calls.
    """

    kind: str  # telephony | ai
    name: str  # provider short name (telephony) or file stem (AI)
    display_name: str
    file: str
    description: str
    transport: str
    audio: AudioSpec
    marks: MarksSpec
    clear: ClearSpec
    hangup: HangupSpec
    connection: ConnectionSpec
    templates: Mapping[str, Template]
    mapped_events: frozenset[str]  # canonical events some incoming pattern emits
    decoder: Decoder = field(repr=False)  # the per-frame half: recognises and extracts incoming frames
    websocket: WebsocketSpec | None = None  # AI only
    ai_format_name: str | None = None  # AI only: pcm16 | g711_ulaw | opus
    opus_frame_ms: float = 20.0
    patterns: tuple[Pattern, ...] = field(default=(), repr=False)
    auth: tuple[AuthScheme, ...] = ()  # telephony: how the platform proves itself on the upgrade

    @property
    def leg(self) -> str:
        """The leg this peer is on (``telephony`` or ``ai``): the same as ``kind``."""
        return self.kind

    def decode(self, frame: str | bytes, env: Mapping[str, Any]) -> Decoded | None:
        """Turn one frame from this peer into canonical events (:meth:`.Decoder.decode`).

        The call core calls this for every frame; ``None`` means a known message that asks for
        nothing, :exc:`~engine.errors.RemoteProtocolError` one the leg's policy must answer.
        """
        return self.decoder.decode(frame, env)


# --------------------------------------------------------------------------------------------
# compiling


class _Compiler:
    def __init__(self, doc: LoadedDocument, kind: str, protocol: CompiledProtocol) -> None:
        self.doc = doc
        self.kind = kind
        self.protocol = protocol
        self.errors: list[SpecError] = []
        self.leg = protocol.legs[kind]

    def error(self, path: JsonPath, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    # -- audio ---------------------------------------------------------------------------

    def encoding(self, text: Any, path: JsonPath) -> tuple[str, int | None] | None:
        parsed = formats.parse_encoding(text) if isinstance(text, str) else None
        if parsed is None:
            self.error(
                path,
                f"unknown encoding {text!r} (canonical: {', '.join(formats.ENCODINGS)}; "
                "platform spellings such as audio/x-mulaw, PCMU, L16, slin are accepted)",
            )
        return parsed

    def check_rate(self, encoding: str, rate: int, path: JsonPath) -> None:
        if encoding in (formats.MULAW, formats.ALAW) and rate != 8000:
            self.error(path, f"sample rate {rate} does not fit {encoding} (G.711 runs at 8000)")
        if encoding == formats.OPUS and rate not in formats.OPUS_RATES:
            self.error(path, f"sample rate {rate} does not fit OPUS (one of {formats.OPUS_RATES})")

    def audio_format(self, raw: Mapping[str, Any], path: JsonPath, fallback: AudioFormat | None) -> AudioFormat | None:
        if "encoding" not in raw:
            if fallback is None:
                return None
            encoding, rate = fallback.encoding, fallback.sample_rate
        else:
            parsed = self.encoding(raw["encoding"], (*path, "encoding"))
            if parsed is None:
                return None
            encoding, rate_hint = parsed
            rate = rate_hint or (fallback.sample_rate if fallback else 8000)
        rate = int(raw.get("sample_rate", rate))
        channels = int(raw.get("channels", fallback.channels if fallback else 1))
        self.check_rate(encoding, rate, (*path, "sample_rate") if "sample_rate" in raw else path)
        if "bit_depth" in raw and raw["bit_depth"] != formats.BIT_DEPTH[encoding]:
            self.error(
                (*path, "bit_depth"),
                f"bit depth {raw['bit_depth']} does not fit {encoding} ({formats.BIT_DEPTH[encoding]}-bit)",
            )
        return AudioFormat(encoding, rate, channels)

    def framing(self, raw: Mapping[str, Any], fmt: AudioFormat | None, path: JsonPath) -> Framing:
        out = Framing(raw.get("frame_ms"), raw.get("multiple_of_bytes"), raw.get("min_bytes"), raw.get("max_bytes"))
        if fmt is not None and fmt.encoding != formats.OPUS:
            width = fmt.bytes_per_sample * fmt.channels
            for key in ("multiple_of_bytes", "min_bytes", "max_bytes"):
                value = raw.get(key)
                if value is not None and value % width:
                    self.error((*path, key), f"{key} {value} is not a whole number of {width}-byte samples of {fmt}")
            if out.frame_ms is not None:
                samples = fmt.sample_rate * out.frame_ms / 1000.0
                if not float(samples).is_integer():
                    self.error(
                        (*path, "frame_ms"),
                        f"{out.frame_ms} ms is not a whole number of samples at {fmt.sample_rate} Hz",
                    )
        if out.min_bytes and out.max_bytes and out.min_bytes > out.max_bytes:
            self.error((*path, "min_bytes"), f"min_bytes {out.min_bytes} is above max_bytes {out.max_bytes}")
        return out

    def audio(self, data: Mapping[str, Any]) -> AudioSpec:
        raw = data.get("audio", {})
        path: JsonPath = ("audio",)
        if self.kind == "ai":
            media = data["media"]
            base = AI_FORMATS[media["audioFormat"]]
            if media["sampleRate"] != base.sample_rate:
                self.error(
                    ("media", "sampleRate"),
                    f"sampleRate {media['sampleRate']} does not fit {media['audioFormat']} "
                    f"(the AI Provider protocol: {media['audioFormat']} runs at {base.sample_rate})",
                )
            if raw:
                declared = self.audio_format(raw, path, base)
                if declared is not None and declared != base:
                    self.error(path, f"audio block says {declared} but media says {media['audioFormat']} ({base})")
            inbound = base
        else:
            # Without an audio block: the adapter guide's own parameters (PCM_16_LE, 8 kHz, mono).
            inbound = (self.audio_format(raw, path, None) or GUIDE_AUDIO) if raw else GUIDE_AUDIO
        accept = raw.get("accept", {})
        encodings = {inbound.encoding}
        for index, text in enumerate(accept.get("encodings", [])):
            parsed = self.encoding(text, (*path, "accept", "encodings", index))
            if parsed:
                encodings.add(parsed[0])
        rates = set(accept.get("sample_rates", [])) | {inbound.sample_rate}
        channels = set(accept.get("channels", [])) | {inbound.channels}
        outbound_raw = raw.get("outbound", {})
        outbound = None
        if any(k in outbound_raw for k in ("encoding", "sample_rate", "channels")):
            outbound = self.audio_format(outbound_raw, (*path, "outbound"), inbound)
        payload = raw.get("payload", "binary" if data.get("transport") == "binary+json" else "base64")
        if payload == "binary" and data.get("transport", "json") != "binary+json":
            self.error((*path, "payload"), "binary audio needs `transport: binary+json`")
        out_payload = outbound_raw.get("payload", payload)
        framing_raw = outbound_raw.get("framing", raw.get("framing", {}))
        framing_path = (*path, "outbound", "framing") if "framing" in outbound_raw else (*path, "framing")
        framing = self.framing(framing_raw, outbound or inbound, framing_path)
        reorder = raw.get("reorder")
        return AudioSpec(
            inbound=inbound,
            accept_encodings=frozenset(encodings),
            accept_rates=frozenset(rates),
            accept_channels=frozenset(channels),
            inbound_payload=payload,
            chunk_ms=float(raw.get("chunk_size_ms", 20)),
            outbound=outbound,
            outbound_payload=out_payload,
            framing=framing,
            playout_lead_ms=int(raw.get("playout_lead_ms", 200)),
            max_buffer_ms=int(raw.get("max_buffer_ms", 120_000)),
            on_overrun=raw.get("on_overrun", "drop_oldest"),
            reorder_by=reorder["by"] if reorder else None,
            reorder_window=int(reorder.get("window", 5)) if reorder else 0,
            reorder_conceal=(reorder.get("conceal", "silence") == "silence") if reorder else True,
        )

    # -- patterns ------------------------------------------------------------------------

    def pattern(self, key: str, raw: Mapping[str, Any], path: JsonPath, *, ignore: bool = False) -> Pattern | None:
        emits = tuple(raw.get("emits", () if ignore else (key,)))
        ok = True
        for index, event in enumerate(emits):
            if event not in self.protocol.events:
                self.error(
                    (*path, "emits", index) if "emits" in raw else path,
                    f"unknown event {event!r}{suggest(event, self.protocol.events)} "
                    f"(canonical: {', '.join(self.protocol.events)})",
                )
                ok = False
            elif event not in self.leg.peer_events:
                self.error(
                    (*path, "emits", index) if "emits" in raw else path,
                    f"the {self.kind} leg does not receive {event!r} (it receives: {', '.join(self.leg.peer_events)})",
                )
                ok = False
        if not ok:
            return None
        frame = raw.get("frame", "text")
        conditions = []
        for cpath, craw in raw.get("detection_pattern", {}).items():
            try:
                conditions.append(compile_condition(cpath, craw))
            except ExpressionError as exc:
                self.error((*path, "detection_pattern", cpath), str(exc))
        if frame == "text" and not conditions and not ignore:
            self.error(path, "a text pattern needs a detection_pattern")
        allowed = set().union(*(self.protocol.event_fields(e) for e in emits)) if emits else set()
        required = set().union(*(self.protocol.events[e].required for e in emits)) if emits else set()
        rules = []
        broken: set[str] = set()
        for fname, fraw in raw.get("extraction_map", {}).items():
            fpath = (*path, "extraction_map", fname)
            custom = fname.startswith("x_")
            if not custom and fname not in allowed:
                hint = suggest(fname, allowed) or f" (its fields: {', '.join(sorted(allowed))})"
                self.error(
                    fpath,
                    f"unknown field {fname!r} for {'/'.join(emits) or 'this message'}{hint}; "
                    "platform extras start with x_",
                )
                broken.add(fname)
                continue
            ftype = (
                "object"
                if custom and isinstance(fraw, dict) and fraw.get("decode") in ("kv", "json")
                else (self.protocol.fields.get(fname, "str"))
            )
            if custom and isinstance(fraw, dict) and "type" in fraw:
                ftype = fraw["type"]
            try:
                rules.append(
                    compile_rule(fname, fraw, ftype, required=fname in required, binary_frame=frame == "binary")
                )
            except ExpressionError as exc:
                self.error(fpath, str(exc))
                broken.add(fname)
        for fname in sorted(required - {r.field for r in rules} - broken):
            self.error((*path, "extraction_map"), f"{'/'.join(emits)} needs field {fname!r}")
        replies = raw.get("reply", ())
        replies = (replies,) if isinstance(replies, str) else tuple(replies)
        fingerprint = []
        for cpath, craw in raw.get("fingerprint", {}).items():
            try:
                fingerprint.append(compile_condition(cpath, craw))
            except ExpressionError as exc:
                self.error((*path, "fingerprint", cpath), str(exc))
        return Pattern(
            key,
            emits,
            frame,
            tuple(conditions),
            tuple(rules),
            replies,
            ignore,
            path,
            compile_extractor(tuple(rules)),
            remember=tuple(r.field for r in rules if r.field.startswith("x_")),
            fingerprint=tuple(fingerprint),
        )

    def patterns(self, data: Mapping[str, Any]) -> list[Pattern]:
        incoming = data.get("events", {}).get("incoming", {})
        out: list[Pattern] = []
        for key, raw in incoming.get("message_patterns", {}).items():
            items = raw if isinstance(raw, list) else [raw]
            for index, item in enumerate(items):
                path: JsonPath = (
                    "events",
                    "incoming",
                    "message_patterns",
                    key,
                    *((index,) if isinstance(raw, list) else ()),
                )
                compiled = self.pattern(key, item, path)
                if compiled is not None:
                    out.append(compiled)
        for index, item in enumerate(incoming.get("ignore", [])):
            compiled = self.pattern("ignore", item, ("events", "incoming", "ignore", index), ignore=True)
            if compiled is not None:
                out.append(compiled)
        seen: dict[tuple[Any, ...], str] = {}
        for pattern in out:
            signature = (pattern.frame, tuple(sorted((c.path, c.op, repr(c.arg)) for c in pattern.conditions)))
            if signature in seen:
                self.error(
                    (*pattern.path, "detection_pattern"),
                    f"same detection_pattern as pattern {seen[signature]!r}: messages would be ambiguous",
                )
            seen[signature] = pattern.key
        return out

    # -- templates -----------------------------------------------------------------------

    def templates(self, data: Mapping[str, Any], extra_vars: set[str], patterns: list[Pattern]) -> dict[str, Template]:
        known = set(self.protocol.fields) | set(vocab.CONTEXT_VARIABLES) | extra_vars
        out: dict[str, Template] = {}
        declared = data.get("events", {}).get("outgoing")
        if declared is None and self.kind == "telephony":
            return mirror_templates(patterns)
        for name, raw in (declared or {}).items():
            path: JsonPath = ("events", "outgoing", name)
            try:
                template = Template(name, raw)
            except TemplateSyntaxError as exc:
                self.error((*path, *exc.path), str(exc))
                continue
            for var in sorted(template.variables - known):
                self.error(
                    _find_placeholder(raw, var, path),
                    f"unknown variable ${{{var}}}{suggest(var, known)} "
                    "(a canonical field, a context variable, or an x_ field this spec extracts)",
                )
            out[name] = template
        return out


def compile_extractor(rules: tuple[FieldRule, ...]) -> Any:
    """One generated function ``(message, env) -> fields`` for a pattern's extraction map.

    It runs for every media frame, so plain paths (``media.payload``) become inline ``dict.get``
    chains followed by the field's coercion; anything else (alternatives, defaults, maps,
    decoders, ``$`` roots) and every failure go through the rule's generic ``read``, which also
    words the error. Paths are embedded with ``repr``, so the source is built from data only.
    """
    namespace: dict[str, Any] = {"MISSING": MISSING, "FieldError": FieldError}
    lines = ["def extract(message, env):", "    out = {}"]
    for index, rule in enumerate(rules):
        namespace[f"read{index}"] = rule.read
        namespace[f"coerce{index}"] = rule.coerce
        steps = rule.paths[0].split(".") if len(rule.paths) == 1 else []
        simple = (
            steps
            and len(steps) <= 4
            and rule.constant is MISSING
            and rule.default is MISSING
            and rule.mapping is None
            and rule.decode is None
            and all(step.isidentifier() for step in steps)
        )
        if not simple:
            lines.append(f"    v = read{index}(message, env)")
        else:
            lines.append(f"    v = message.get({steps[0]!r}, MISSING) if type(message) is dict else MISSING")
            for step in steps[1:]:
                lines.append(f"    v = v.get({step!r}, MISSING) if type(v) is dict else MISSING")
            lines += [
                "    if v is MISSING or v is None:",
                f"        v = read{index}(message, env)",
                "    else:",
                "        try:",
                f"            v = coerce{index}(v)",
                "        except FieldError:",
                f"            v = read{index}(message, env)",
            ]
        lines += ["    if v is not MISSING:", f"        out[{rule.field!r}] = v"]
    lines.append("    return out")
    exec(compile("\n".join(lines), "<extraction map>", "exec"), namespace)
    return namespace["extract"]


def suggest(name: str, known: Any) -> str:
    """``; did you mean 'x'?`` for a near miss, else nothing."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _find_placeholder(node: Any, var: str, path: JsonPath) -> JsonPath:
    """The path of the first value in a template that uses ``${var}`` (else the template's)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, str) and "${" + var in value:
            return (*path, key)
        found = _find_placeholder(value, var, (*path, key))
        if found != (*path, key):
            return found
    return path


def mirror_templates(patterns: list[Pattern]) -> dict[str, Template]:
    """Outgoing messages in the shape of the incoming ones, for specs that declare none.

    The adapter guide's example maps only what the platform sends; a platform that follows the
    guide literally takes back the same shapes. Each media/mark/clear pattern becomes a template:
    its ``detection_pattern`` equalities as constants, its simple extraction paths as
    placeholders (optional, except the audio). Only text patterns are mirrored.
    """
    out: dict[str, Template] = {}
    for pattern in patterns:
        event = pattern.emits[0] if pattern.emits else ""
        if event not in MIRRORED_EVENTS or event in out or pattern.frame != "text" or pattern.ignore:
            continue
        message: dict[str, Any] = {}
        for condition in pattern.conditions:
            if condition.op == "eq" and not condition.path.startswith("$"):
                _put(message, condition.path, condition.arg)
        for rule in pattern.rules:
            path = rule.paths[0] if rule.paths else ""
            if path and not path.startswith("$") and "[" not in path:
                optional = "" if rule.field == "audio" else "?"
                _put(message, path, f"${{{rule.field}{optional}}}")
        out[event] = Template(event, message)
    return out


def _put(message: dict[str, Any], path: str, value: Any) -> None:
    node = message
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[last] = value


def compile_peer(
    doc: LoadedDocument, kind: str, protocol: CompiledProtocol, name: str
) -> tuple[CompiledPeer | None, list[SpecError]]:
    """Compile a schema-valid peer document of ``kind`` (``telephony`` or ``ai``)."""
    data = doc.data
    c = _Compiler(doc, kind, protocol)
    audio = c.audio(data)
    patterns = c.patterns(data)
    custom_vars = {r.field for p in patterns for r in p.rules if r.field.startswith("x_")}
    templates = c.templates(data, custom_vars, patterns)
    mapped = frozenset(e for p in patterns if not p.ignore for e in p.emits)
    for pattern in patterns:
        for reply in pattern.replies:
            if reply not in templates:
                c.error(
                    (*pattern.path, "reply"), f"reply {reply!r} is not an outgoing message{suggest(reply, templates)}"
                )
    if any(p.frame == "binary" for p in patterns) and data.get("transport", "json") != "binary+json":
        c.error(("transport",), "binary patterns need `transport: binary+json`")
    marks_raw = data.get("marks", {})
    marks = MarksSpec(
        mode=marks_raw.get("mode", "native" if "mark" in templates and "mark" in mapped else "emulated"),
        echo_on_clear=bool(marks_raw.get("echo_on_clear", False)),
        timeout_ms=int(marks_raw.get("timeout_ms", 60_000)),
        max_pending=int(marks_raw.get("max_pending", 256)),
    )
    clear_raw = data.get("clear", {})
    clear = ClearSpec(
        clear_raw.get("mode", "native" if "clear" in templates else "emulated"),
        bool(clear_raw.get("acknowledged", False)),
    )
    hangup_raw = data.get("hangup", {})
    hangup = HangupSpec(
        hangup_raw.get("send", "hangup" if "hangup" in templates else None),
        int(hangup_raw.get("close_code", 1000)),
        str(hangup_raw.get("close_reason", "call ended")),
    )
    if hangup.close_code in vocab.RESERVED_CLOSE_CODES:
        c.error(("hangup", "close_code"), f"close code {hangup.close_code} is reserved and cannot be sent")
    if hangup.send is not None and hangup.send not in templates:
        c.error(("hangup", "send"), f"hangup sends {hangup.send!r}, which is not an outgoing message")
    conn_raw = data.get("connection", {})
    connection = ConnectionSpec(
        subprotocols=tuple(conn_raw.get("subprotocols", ())),
        compression=conn_raw.get("compression", "none"),
        max_message_bytes=int(conn_raw.get("max_message_bytes", 1 << 20)),
        max_text_bytes=conn_raw.get("max_text_bytes"),
    )
    auth = compile_schemes(data.get("auth", ()), c.error)
    _check_semantics(c, kind, data, marks, clear, templates, mapped, audio)
    if connection.max_text_bytes is not None:
        _check_text_sizes(c, data, templates, connection.max_text_bytes)
    websocket = None
    display = name
    ai_format = None
    frame_ms = 20.0
    if kind == "ai":
        ws = data["websocket"]
        websocket = WebsocketSpec(
            ws["url"], MappingProxyType(dict(ws.get("headers", {}))), tuple(ws.get("subprotocols", ()))
        )
        display = data["name"]
        ai_format = data["media"]["audioFormat"]
        frame_ms = float(data["media"].get("frameMs", 20))
    else:
        display = data["provider"]
    if c.errors:
        return None, c.errors
    return CompiledPeer(
        kind=kind,
        name=name,
        display_name=display,
        file=doc.file,
        description=data.get("description", ""),
        transport=data.get("transport", "json"),
        audio=audio,
        marks=marks,
        clear=clear,
        hangup=hangup,
        connection=connection,
        templates=MappingProxyType(templates),
        mapped_events=mapped,
        decoder=Decoder.from_patterns(kind, name, tuple(patterns)),
        websocket=websocket,
        ai_format_name=ai_format,
        opus_frame_ms=frame_ms,
        patterns=tuple(patterns),
        auth=auth,
    ), []


#: what each kind of template variable typically holds, for sizing control messages
_TYPICAL_TEXT = "x" * 16
_TYPICAL_ID = "0b3c5e6a-1d2f-4a8b-9c0d-e1f2a3b4c5d6"  # platform ids are UUID-sized


def _typical(var: str) -> Any:
    if var == "mark":
        return "cb1234"  # callbridge's wire names for marks: cb1, cb2, ...
    if var in ("digit",):
        return "5"
    if var in ("reason", "mark_status"):
        return "NORMAL_CLEARING"
    if var.endswith("_id") or var in ("stream_id", "call_id", "platform_call_id", "bridge_call_id"):
        return _TYPICAL_ID
    if var in ("seq", "media_seq", "sequence", "chunk", "timestamp", "duration", "played_ms", "item_played_ms",
               "media_timestamp", "sample_rate", "out_sample_rate", "ai_sample_rate", "agent_id", "outlet_id"):
        return 123456
    if var in ("caller_number", "callee_number", "from", "to", "virtual_number", "caller_id"):
        return "+919876543210"
    return _TYPICAL_TEXT


def _check_text_sizes(c: _Compiler, data: Mapping[str, Any], templates: Mapping[str, Template], limit: int) -> None:
    """Every JSON control message, rendered with typical values, must fit ``max_text_bytes``
    (Asterisk ignores longer control text). Templates carrying audio are media, not control."""
    outgoing = data.get("events", {}).get("outgoing", {})
    for name, template in templates.items():
        if template.binary or "audio" in template.variables:
            continue
        values = {var: _typical(var) for var in template.variables}
        try:
            size = len(template.render(values, {}))
        except Exception:
            continue
        if size > limit:
            path: JsonPath = ("events", "outgoing", name) if name in outgoing else ("connection", "max_text_bytes")
            c.error(
                path,
                f"message {name!r} renders to {size} bytes with typical values, over "
                f"connection.max_text_bytes {limit} (the peer ignores longer control messages)",
            )


def _check_semantics(
    c: _Compiler,
    kind: str,
    data: Mapping[str, Any],
    marks: MarksSpec,
    clear: ClearSpec,
    templates: Mapping[str, Template],
    mapped: frozenset[str],
    audio: AudioSpec,
) -> None:
    outgoing_path: JsonPath = ("events", "outgoing")
    if marks.mode == "native":
        if "mark" not in templates:
            c.error(("marks", "mode"), "native marks need an outgoing `mark` message")
        if "mark" not in mapped:
            c.error(("marks", "mode"), "native marks need an incoming pattern that emits `mark` (the echo)")
    if clear.mode == "native" and "clear" not in templates and kind == "telephony":
        c.error(("clear", "mode"), "native clear needs an outgoing `clear` message")
    media_template = templates.get("media")
    if media_template is not None:
        wants_binary = audio.outbound_payload == "binary"
        if media_template.binary != wants_binary:
            c.error(
                (*outgoing_path, "media"),
                "outgoing media must be "
                + ("a binary frame ({$frame: binary})" if wants_binary else "JSON with ${audio}")
                + f" to match audio payload {audio.outbound_payload!r}",
            )
    if kind == "telephony":
        # The adapter guide's mandatory-event checklist.
        for label, event, mandatory in vocab.CHECKLIST:
            if not mandatory:
                continue
            if event == "clear":
                if "clear" not in templates and "clear" not in mapped:
                    c.error(
                        ("events",),
                        f"checklist {label}: no outgoing `clear` message (barge-in "
                        "must be able to drop the platform's queued audio)",
                    )
            elif event not in mapped:
                c.error(("events", "incoming"), f"checklist {label}: no incoming pattern emits {event!r}")
        if "media" not in templates:
            c.error(outgoing_path, "checklist audio/media: no outgoing `media` message (audio must flow both ways)")
    else:
        for needed in ("start", "media"):
            if needed not in templates:
                c.error(outgoing_path, f"the AI leg needs an outgoing `{needed}` message")
        if "media" not in mapped:
            c.error(("events", "incoming"), "the AI leg needs an incoming pattern that emits `media`")
