"""The names a spec may use that the engine itself implements: actions, guards, internal events,
template variables. The compiler checks every name a spec uses against these tables, so a typo
fails at load time with its line, never mid-call. :mod:`engine.core.control` registers one
implementation for each action and guard (``tests/core/test_vocabulary_agrees.py`` checks that
the two agree and that the shipped protocol uses every one).
"""

from __future__ import annotations

#: action name -> what it does (shown by ``callbridge diagram`` and in errors)
ACTIONS: dict[str, str] = {
    "open_ai_leg": "open the WebSocket to the AI provider routed for this call",
    "send_ai_start": "send the AI provider its start message (the AI Provider protocol: callId, numbers, mediaFormat)",
    "flush_early_audio": "send the AI the caller audio that arrived while its leg was opening",
    "forward_audio": "transcode caller audio to the AI's format and send it (media fast path)",
    "forward_dtmf": "send the caller's keypad digit to the AI",
    "resolve_mark": "settle a mark the platform echoed (played, or cleared where it says so)",
    "confirm_clear": "note the platform's acknowledgement of a clear",
    "hangup_ai": "send the AI its hangup with a reason, then close the AI leg",
    "hangup_telephony": "send the platform's own hangup (or close) and end the caller's leg",
    "close_telephony": "close the platform's WebSocket",
    "close_ai": "close the AI provider's WebSocket",
    "play_audio": "transcode AI audio to the platform's format and queue it for paced playout (media fast path)",
    "barge_in": "drop all unplayed audio, send the platform's clear, settle pending marks as cleared",
    "queue_mark": "place a mark after the audio queued so far; answer the AI when it is played",
    "send_dtmf": "send a digit to the platform (where its spec has a dtmf message)",
}

#: actions that may appear on a media transition (they run without a trigger, per frame)
MEDIA_ACTIONS: dict[str, str] = {"telephony": "forward_audio", "ai": "play_audio"}

GUARDS: dict[str, str] = {
    "media_format_supported": "the start message's media format is one the platform spec accepts",
    "digit_valid": "the digit is one of 0-9, *, #, A-D",
    "mark_pending": "the mark is one callbridge sent and has not settled yet",
}

#: what a state means to the engine, declared per state in protocol.yaml (``role:``). The engine
#: and the tools ask these questions of a leg ("is the AI leg up?", "is it still opening?") and
#: never name a state, so a protocol designer may rename or add states freely.
ROLES: dict[str, str] = {
    "idle": "the leg has not been asked for yet (the AI leg before the caller's start)",
    "opening": "the leg's peer is being reached or greeted (the platform's handshake, the AI's WebSocket)",
    "setup": "the peer has greeted; the call's metadata is awaited",
    "live": "the call is up on this leg: commands and audio may be sent to its peer",
    "ending": "callbridge or the peer ended this leg; its socket is closing",
    "ended": "the leg is gone (every final state has this role, and only final states)",
}

#: events the engine raises itself; a protocol may use any of them in transitions
INTERNAL_EVENTS: frozenset[str] = frozenset({"dial", "opened", "failed", "closed", "timeout", "hangup_sent"})

#: the internal events that can happen on each leg (the table must cover them too)
LEG_INTERNAL_EVENTS: dict[str, tuple[str, ...]] = {
    "telephony": ("closed", "timeout", "hangup_sent"),
    "ai": ("dial", "opened", "failed", "closed", "timeout", "hangup_sent"),
}

#: close codes RFC 6455 reserves: they must never be sent in a close frame
RESERVED_CLOSE_CODES: frozenset[int] = frozenset({1004, 1005, 1006, 1015})

#: the canonical events and the adapter guide's category for each; protocol.yaml must declare
#: exactly these (it may add fields, not events: the engine's actions are written for these)
CANONICAL_EVENTS: tuple[str, ...] = (
    "connected",
    "start",
    "media",
    "dtmf",
    "mark",
    "clear",
    "stop",
    "hangup",
)

#: variables every outgoing template may use besides the canonical fields
CONTEXT_VARIABLES: dict[str, str] = {
    "bridge_call_id": "callbridge's own id for this call (also in every log line)",
    "platform_call_id": "the platform's call id (start call_id, else its stream id)",
    "caller_number": "caller's number, E.164 where it parses",
    "callee_number": "callee's number, E.164 where it parses",
    "provider": "the telephony provider's short name",
    "call_type": "inbound | outbound (from the URL)",
    "agent_id": "from the URL",
    "outlet_id": "from the URL",
    "virtual_number": "from the URL",
    "caller_id": "from the URL's ?caller_id= (a fresh UUID when absent)",
    "ai_encoding": "the AI spec's media.audioFormat (pcm16, g711_ulaw, opus)",
    "ai_sample_rate": "the AI spec's media.sampleRate",
    "out_encoding": "the encoding callbridge sends this peer, as its spec spells it",
    "out_sample_rate": "the sample rate callbridge sends this peer",
    "seq": "counter of messages callbridge sent on this leg, from 1",
    "media_seq": "counter of media messages callbridge sent on this leg, from 1",
    "media_timestamp": "ms of audio callbridge sent on this leg before this message",
    "played_ms": "ms of AI audio the caller has actually heard",
    "item_played_ms": "ms of the current AI audio item (its x_item_id) the caller heard; set at barge-in",
}

#: the adapter guide's mandatory-event checklist, in its own category names
CHECKLIST: tuple[tuple[str, str, bool], ...] = (
    ("handshake/connected", "connected", True),
    ("meta/start", "start", True),
    ("audio/media", "media", True),
    ("control/clear", "clear", True),
    ("control/mark", "mark", False),
)
