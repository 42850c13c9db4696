"""Tell the platform from its first message(s): ``detect_provider(specs, first_frames)``.

For ``/ws-adapter/auto/...``: a platform that did not say who it is. Every platform spec is
tried on the frames, using only what the specs declare:

1. **Candidates**: specs that decode every frame given (no unknown or malformed message), whose
   first frame is a handshake or a start (``connected``/``start``), in an order their protocol
   allows (a start before a handshake is not a candidate, unless the same frame is both).
2. **Evidence**: Twilio, SignalWire and Tata Smartflo send the same shapes, so decoding alone
   cannot separate them. Each pattern may declare a ``fingerprint:`` (conditions its platform's
   messages usually meet: ``connected.version``, ``start.from`` present, a top-level
   ``streamSid``...). For each frame, every fingerprint condition of the pattern it matched
   scores +1 when it holds; one that does not hold contradicts the candidate.
3. The best-scoring candidate that nothing contradicts wins. Two or more at the top score, or
   several candidates all contradicted, is **ambiguous**: the error names them (the caller may
   supply one more frame, or the route must name the platform). Detection never guesses.

Raises :class:`~engine.errors.RemoteProtocolError` of kind ``UNKNOWN`` (no spec fits) or
``AMBIGUOUS`` (a tie), and a message naming the candidates, e.g. ``cannot tell the platform:
matches twilio and smartflo equally (evidence: twilio 0, smartflo 0)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import CLOSE_POLICY_VIOLATION, ProtocolErrorKind, RemoteProtocolError
from engine.language.loader import SpecSet
from engine.language.peer import CompiledPeer

HANDSHAKE_EVENTS = frozenset({"connected", "start"})


@dataclass(frozen=True)
class Candidate:
    """A platform spec that fits the first frames, and how well: ``score`` fingerprint
    conditions held, ``contradicted`` did not. :func:`candidates` lists them best first."""

    name: str
    score: int
    contradicted: int  # fingerprint conditions that did not hold
    events: tuple[tuple[str, ...], ...]  # what each frame meant to this spec


def _evaluate(peer: CompiledPeer, frames: Sequence[str | bytes], env: Mapping[str, Any]) -> Candidate | None:
    score = contradicted = 0
    seen: list[tuple[str, ...]] = []
    for index, frame in enumerate(frames):
        try:
            decoded = peer.decode(frame, env)
        except RemoteProtocolError:
            return None
        events = decoded.events if decoded is not None else ()
        if index == 0 and not (HANDSHAKE_EVENTS & set(events)):
            return None  # a call opens with a handshake or a start
        if index == 0 and "start" in events and "connected" not in events and "connected" in peer.mapped_events:
            return None  # this platform shakes hands first: a start cannot open its call
        seen.append(events)
        if decoded is None or isinstance(frame, bytes | bytearray):
            continue
        message = orjson.loads(frame)
        for condition in decoded.pattern.fingerprint:
            if condition.holds(message, env):
                score += 1
            else:
                contradicted += 1
    return Candidate(peer.name, score, contradicted, tuple(seen))


def candidates(specs: SpecSet, frames: Sequence[str | bytes], env: Mapping[str, Any] | None = None) -> list[Candidate]:
    """Every platform spec that fits ``frames``, best evidence first."""
    env = env or {"query": {}, "path": {}, "header": {}}
    found = [c for peer in specs.providers.values() if (c := _evaluate(peer, frames, env)) is not None]
    return sorted(found, key=lambda c: (c.contradicted > 0, -c.score, c.name))


def detect_provider(specs: SpecSet, first_frames: Sequence[str | bytes], env: Mapping[str, Any] | None = None) -> str:
    """The name of the platform spec the first frames came from (see the module docstring)."""
    if not first_frames:
        raise RemoteProtocolError(
            "cannot tell the platform: no message yet", leg="telephony", kind=ProtocolErrorKind.UNKNOWN
        )
    found = candidates(specs, first_frames, env)
    what = f"{len(first_frames)} message{'s' if len(first_frames) != 1 else ''}"
    if not found:
        first = first_frames[0]
        shown = first[:80] if isinstance(first, str) else f"binary {len(first)} B"
        raise RemoteProtocolError(
            f"cannot tell the platform: no platform spec recognises the first {what} ({shown!r})",
            leg="telephony",
            kind=ProtocolErrorKind.UNKNOWN,
            close_code=CLOSE_POLICY_VIOLATION,
        )
    top = found[0]
    best = [c for c in found if c.score == top.score and (c.contradicted > 0) == (top.contradicted > 0)]
    if top.contradicted and len(found) > 1:
        best = found  # every candidate has evidence against it
    if len(best) > 1:
        names = [c.name for c in best]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        evidence = ", ".join(f"{c.name} +{c.score}/-{c.contradicted}" for c in found)
        how = "equally" if not top.contradicted else "but each contradicts part of its fingerprint"
        raise RemoteProtocolError(
            f"cannot tell the platform: the first {what} match {listed} {how} "
            f"(fingerprint evidence: {evidence}); name the platform in the URL",
            leg="telephony",
            kind=ProtocolErrorKind.AMBIGUOUS,
            close_code=CLOSE_POLICY_VIOLATION,
        )
    return found[0].name
