"""Opening the AI leg under the config's failure policy.

:func:`open_ai_leg` is what a bridge runs when the core asks for the AI leg (an
:class:`~engine.core.commands.OpenLeg`): a ``websockets`` client connection to the provider's URL
with its headers and subprotocols, each attempt bounded by the connect timeout, retried with
exponential backoff, then once more (with the same retries) at the fallback provider if one is
configured. It returns the open connection, or ``None`` when every attempt failed; the caller
then reports ``ai_failed`` and the core hangs up the caller. The whole thing is also bounded
by the protocol's ``ai_connect_timeout`` timer: when it fires, the core closes the AI leg and
the bridge cancels this coroutine.

Headers are secrets: attempts are logged with the URL's query string redacted and no headers.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import connect

from engine.config import AIFailurePolicy, redact_url
from engine.core.session import AITarget, CallSession
from engine.io.direct import DirectClientConnection
from engine.io.logs import JsonLog
from engine.io.metrics import Metrics


@dataclass(frozen=True)
class Attempt:
    """One way to reach an AI backend: its URL, upgrade headers and subprotocols, and the spec
    name it is reported under. :func:`open_ai_leg` tries a list of them in order."""

    url: str
    headers: Mapping[str, str]
    subprotocols: tuple[str, ...]
    label: str  # the AI spec name, for metrics and logs
    ssl: ssl_module.SSLContext | None = None  # None: websockets' default for wss:// (verified)


def can_retarget(session: CallSession, target: AITarget) -> bool:
    """A fallback is possible while the AI leg has not opened; the core rebuilds the call's
    audio path for the fallback's format (:meth:`CallSession.retarget_ai`)."""
    ai = session.ai
    return ai.state not in ai.compiled.media_states and ai.state not in ai.compiled.final


def retarget(session: CallSession, target: AITarget) -> None:
    """Point a session whose AI leg is still connecting at a fallback provider."""
    session.retarget_ai(target)


async def connect_once(attempt: Attempt, timeout: float, max_size: int) -> DirectClientConnection:
    """Open one WebSocket to the AI, in direct mode (each message goes straight to the bridge).

    No retry: that is :func:`open_ai_leg`'s job. Raises what ``websockets.connect`` raises
    (``OSError``, ``TimeoutError``, ``InvalidHandshake``...) when the AI cannot be reached.
    """
    extra: dict[str, Any] = {"ssl": attempt.ssl} if attempt.ssl is not None else {}
    ws = await connect(
        attempt.url,
        additional_headers=dict(attempt.headers),
        subprotocols=list(attempt.subprotocols) or None,  # type: ignore[arg-type]
        compression=None,  # audio does not compress; deflate costs 2x CPU (perf-anchors §5)
        open_timeout=timeout,
        max_size=max_size,
        proxy=None,  # predictable: the AI URL is dialled as written
        create_connection=DirectClientConnection,  # messages straight to the bridge
        **extra,
    )
    assert isinstance(ws, DirectClientConnection)
    return ws


async def open_ai_leg(
    attempts: list[Attempt],
    policy: AIFailurePolicy,
    timeout: float,
    max_size: int,
    *,
    log: JsonLog,
    metrics: Metrics,
    call_id: str,
    before_fallback: Callable[[], bool] | None = None,
) -> tuple[DirectClientConnection | None, Attempt | None, str]:
    """Try ``attempts[0]`` (with retries), then each later one (the fallback).

    ``before_fallback`` is called before moving on to the next target; returning False skips
    it. Returns ``(connection, attempt that worked, last error)``.
    """
    last_error = ""
    for index, attempt in enumerate(attempts):
        if index and before_fallback is not None and not before_fallback():
            break
        for retry in range(policy.retries + 1):
            if retry:
                await asyncio.sleep(policy.delay(retry))
            try:
                ws = await connect_once(attempt, timeout, max_size)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                last_error = _describe(exc)
                metrics.ai_connect_failures.labels(attempt.label).inc()
                log.event(
                    "warning",
                    "ai.connect_attempt_failed",
                    f"attempt {retry + 1}/{policy.retries + 1} to {redact_url(attempt.url)} "
                    f"failed: {last_error}",
                    call_id=call_id,
                    leg="ai",
                    fields={"ai": attempt.label},
                )
                continue
            return ws, attempt, ""
    return None, None, last_error


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
