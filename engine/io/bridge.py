"""One live call: a :class:`CallBridge` drives a sans-I/O ``CallSession`` from two sockets.

The server makes one bridge per accepted platform connection and awaits :meth:`CallBridge.run`.
Both legs are :mod:`engine.io.direct` connections: each message reaches the bridge from inside
the socket's read callback, goes through the session with ``loop.time()`` as ``now``, and the
frames it causes are written before the callback returns. Nothing awaits between a session
call and the execution of its actions, so frames leave in exactly the order the core produced
them without a lock, and a message costs no task switch.

* the telephony leg: attached by :meth:`run`, which then waits for the socket to close;
* the AI leg: a task opens it when the core asks (:mod:`engine.io.ai_client`), then attaches;
* timers: one ``loop.call_at`` handle at ``session.next_deadline()`` (an absolute deadline, so
  pacing error never accumulates), also enforcing the idle timeout;
* a barge-in's platform ``clear`` is the first command the session returns for it, and is
  written before anything after it.

Backpressure: while one leg's write buffer is over its limit, the bridge stops reading the
other leg (the playout buffer, capped by the spec, holds the AI's audio meanwhile).

Whatever goes wrong in one call (a bug included) is logged and ends that call only: both legs
are closed and the session is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from math import inf
from typing import Any

from engine.config import AIFailurePolicy, Limits
from engine.core.commands import AI, TELEPHONY, CloseLeg, Command, Notice, OpenLeg, Reschedule, Send
from engine.core.session import AITarget, CallSession
from engine.errors import CLOSE_INTERNAL_ERROR
from engine.io.ai_client import Attempt, can_retarget, open_ai_leg, retarget
from engine.io.direct import DirectClientConnection, DirectServerConnection, Message, send_now
from engine.io.logs import JsonLog
from engine.io.metrics import FRAME_TIME_SAMPLE, Metrics

#: after the caller's socket closes, how long the AI leg may take to wind down (the protocol's
#: own ai_close_timeout normally ends it first)
WIND_DOWN_S = 5.0
#: timers may fire a hair early (uvloop has millisecond resolution): a deadline this close is due
TIMER_SLACK_S = 0.002


@dataclass
class BridgeContext:
    """What every bridge of one server shares."""

    limits: Limits
    policy: AIFailurePolicy
    log: JsonLog
    metrics: Metrics
    fallback: AITarget | None = None
    echo_url: str = ""  # this server's own echo AI, dialled with echo_ssl when it serves TLS
    echo_ssl: ssl.SSLContext | None = None


class CallBridge:
    """One live call: the session, the platform's connection and (once open) the AI's."""

    def __init__(self, session: CallSession, telephony: DirectServerConnection, ctx: BridgeContext) -> None:
        self.session = session
        self.tel_ws = telephony
        self.ai_ws: DirectClientConnection | None = None
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.outcome: str | None = None  # set by whatever ends the call unusually
        self.last_rx = self.loop.time()
        self._ai_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scheduled = inf
        self._done = asyncio.Event()
        self._broken = False  # a bug hit this call: ignore its sockets from now on
        self._background: set[asyncio.Task[Any]] = set()
        self._frame_time = ctx.metrics.frame_time
        self._tel_count = self._ai_count = 0
        self._reschedule = True  # a Reschedule command came: read next_deadline() again

    @property
    def call_id(self) -> str:
        """The id callbridge gave the call (in every log line)."""
        return self.session.call_id

    # ------------------------------------------------------------------ the call's life

    async def run(self, first: list[Message] | None = None) -> str:
        """Run the call to its end; returns its outcome (see :data:`engine.io.metrics.OUTCOMES`).

        ``first``: messages already read from the platform (the ``auto`` route's detection)."""
        session, tel = self.session, self.tel_ws
        try:
            for message in first or ():
                self._on_tel_message(message)
            tel.on_writable = self._tel_writable
            tel.attach(self._on_tel_message)
            self._arm_timer()
            await tel.wait_closed()
            if not self._broken:
                rcvd = tel.protocol.close_rcvd
                code = rcvd.code if rcvd is not None else None
                self._call(lambda now: session.telephony_closed(now, code))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), WIND_DOWN_S)
        except Exception as exc:  # a bug in one call must not reach the server or other calls
            self._fail(exc)
        finally:
            await self._cleanup()
        return self.outcome or "completed"

    async def hang_up(self, why: str) -> None:
        """End the call from our side, cleanly on both legs (drain, idle timeout).

        The AI gets its ``hangup`` (NORMAL_CLEARING) and a close; the platform gets its own
        close code."""
        if self._done.is_set():
            return
        self.outcome = self.outcome or why
        self._call(self.session.hang_up)
        hangup = self.session.tel.peer.hangup
        await self._close_tel(hangup.close_code, hangup.close_reason)

    # ------------------------------------------------------------------ messages in

    def _on_tel_message(self, message: Message) -> None:
        if self._broken:
            return
        self.last_rx = now = self.loop.time()
        self._tel_count += 1
        try:
            if self._tel_count % FRAME_TIME_SAMPLE:
                actions = self.session.receive_telephony(message, now)
            else:
                started = time.perf_counter()
                actions = self.session.receive_telephony(message, now)
                self._frame_time[TELEPHONY].observe(time.perf_counter() - started)
            self._execute(actions)
            self._poke()
        except Exception as exc:
            self._fail(exc)

    def _on_ai_message(self, message: Message) -> None:
        if self._broken:
            return
        self._ai_count += 1
        try:
            if self._ai_count % FRAME_TIME_SAMPLE:
                actions = self.session.receive_ai(message, self.loop.time())
            else:
                started = time.perf_counter()
                actions = self.session.receive_ai(message, self.loop.time())
                self._frame_time[AI].observe(time.perf_counter() - started)
            self._execute(actions)
            self._poke()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """A bug in this call: log it, close the caller with 1011 and let :meth:`run` clean up."""
        if self._broken:
            return
        self._broken = True
        self.outcome = "error"
        self.ctx.log.event("error", "call.error", f"{type(exc).__name__}: {exc}", call_id=self.call_id)
        self._spawn(self._close_tel(CLOSE_INTERNAL_ERROR, "internal error"))

    # ------------------------------------------------------------------ actions

    def _call(self, fn: Callable[[float], list[Command]]) -> None:
        self._execute(fn(self.loop.time()))
        self._poke()

    def _execute(self, actions: list[Command]) -> None:
        """Carry out a session's commands, in order."""
        for action in actions:
            kind = type(action)
            if kind is Send:
                assert isinstance(action, Send)
                ws = self.tel_ws if action.leg == TELEPHONY else self.ai_ws
                if ws is not None:
                    send_now(ws, action.data, not action.binary)  # a closed leg's reader reports it
            elif kind is Notice:
                assert isinstance(action, Notice)
                self._notice(action)
            elif kind is OpenLeg:
                assert isinstance(action, OpenLeg)
                if self._ai_task is None:
                    self._ai_task = self.loop.create_task(self._ai_leg(action))
            elif kind is CloseLeg:
                assert isinstance(action, CloseLeg)
                if action.leg == TELEPHONY:
                    self._spawn(self.tel_ws.close(action.code, action.reason))
                elif self.ai_ws is not None:
                    self._spawn(self.ai_ws.close(action.code, action.reason))
                elif self._ai_task is not None:
                    self._ai_task.cancel()  # still connecting: stop trying
            elif kind is Reschedule:
                self._reschedule = True

    def _notice(self, notice: Notice) -> None:
        self.ctx.log.notice(self.call_id, notice)
        self.ctx.metrics.notice(notice)
        code = notice.code
        if code in ("ai.connect_failed", "timer.ai_connect_timeout"):
            self.outcome = self.outcome or "ai_unreachable"
        elif code.startswith("violation.") and notice.fields.get("policy") == "close":
            self.outcome = self.outcome or "protocol_error"

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_tel(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.tel_ws.close(code, reason), 2.0)

    # ------------------------------------------------------------------ backpressure

    def _tel_writable(self, writable: bool) -> None:
        """The platform is not taking what we write: stop reading the AI until it does."""
        ai = self.ai_ws
        if ai is not None:
            (ai.resume_reading_for if writable else ai.pause_reading_for)("backpressure")

    def _ai_writable(self, writable: bool) -> None:
        """The AI is not taking the caller's audio: stop reading the platform until it does."""
        tel = self.tel_ws
        (tel.resume_reading_for if writable else tel.pause_reading_for)("backpressure")

    # ------------------------------------------------------------------ the AI leg

    def _attempts(self, first: OpenLeg) -> list[Attempt]:
        """The routed AI provider, then the configured fallback (if any)."""
        attempts = [Attempt(first.url, first.headers, first.subprotocols, self.session.ai.peer.name)]
        fallback = self.ctx.fallback
        if fallback is not None:
            ws_spec = fallback.peer.websocket
            assert ws_spec is not None
            headers = fallback.headers if fallback.headers is not None else ws_spec.headers
            attempts.append(Attempt(fallback.url or ws_spec.url, headers, ws_spec.subprotocols, fallback.peer.name))
        if self.ctx.echo_ssl is not None:
            echo = self.ctx.echo_url
            attempts = [replace(a, ssl=self.ctx.echo_ssl) if a.url == echo else a for a in attempts]
        return attempts

    def _before_fallback(self) -> bool:
        """Point the call at the fallback provider; ``False`` when it is too late for that."""
        session, ctx, fallback = self.session, self.ctx, self.ctx.fallback
        assert fallback is not None
        if not can_retarget(session, fallback):
            ctx.log.event(
                "warning",
                "ai.fallback_skipped",
                f"fallback {fallback.peer.name!r} not tried: the AI leg is already {session.ai.state}",
                call_id=self.call_id,
                leg=AI,
            )
            return False
        retarget(session, fallback)
        ctx.log.event(
            "info", "ai.fallback", f"trying fallback AI provider {fallback.peer.name!r}", call_id=self.call_id, leg=AI
        )
        return True

    async def _ai_leg(self, first: OpenLeg) -> None:
        """Open the AI leg (retries, then the fallback), attach it, and report its close."""
        session, ctx = self.session, self.ctx
        attempts = self._attempts(first)
        try:
            ws, _, error = await open_ai_leg(
                attempts,
                ctx.policy,
                ctx.limits.ai_connect_timeout_s,
                ctx.limits.max_message_bytes,
                log=ctx.log,
                metrics=ctx.metrics,
                call_id=self.call_id,
                before_fallback=self._before_fallback,
            )
        except asyncio.CancelledError:
            return
        if ws is None:
            self.outcome = self.outcome or "ai_unreachable"
            ctx.log.event("warning", "ai.connect_failed", f"AI provider unreachable: {error}",
                          call_id=self.call_id, leg=AI)
            self._call(lambda now: session.ai_failed(now, error))
            return
        if not session.ai_leg_in("opening") or self._broken:  # the call ended (or timed out) meanwhile
            await ws.close()
            return
        self.ai_ws = ws
        ws.on_writable = self._ai_writable
        self._call(session.ai_opened)
        ws.attach(self._on_ai_message)
        await ws.wait_closed()
        if self._broken:
            return
        rcvd = ws.protocol.close_rcvd
        code = rcvd.code if rcvd is not None else None
        if session.ai_leg_in("live") and not session.tel_leg_in("ended"):
            self.outcome = self.outcome or "ai_dropped"
            ctx.log.event(
                "warning",
                "ai.dropped",
                f"AI provider closed the call (code {code})",
                call_id=self.call_id,
                leg=AI,
            )
        # The AI's close code is logged, not passed on: the core would close the caller's leg
        # with it (e.g. 1011), where the platform must get its own close code.
        try:
            self._call(lambda now: session.ai_closed(now, None))
        except Exception as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ timers

    def _poke(self) -> None:
        """After any session call: re-arm the timer if the next deadline moved earlier."""
        session = self.session
        if session.finished:
            self._done.set()
            return
        if not self._reschedule:
            return  # most media frames: nothing that could bring a deadline forward
        self._reschedule = False
        deadline = session.next_deadline()
        if deadline is not None and deadline < self._scheduled:
            self._arm_timer()

    def _arm_timer(self) -> None:
        """One handle at the earlier of the session's next deadline and the idle timeout."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._scheduled = inf
        session = self.session
        if self._done.is_set() or self._broken:
            return
        deadline = session.next_deadline()
        target = deadline if deadline is not None else inf
        if session.tel.state not in session.tel.compiled.final:
            target = min(target, self.last_rx + self.ctx.limits.idle_timeout_s)
        if target != inf:
            self._scheduled = target
            self._timer = self.loop.call_at(target, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._scheduled = inf
        if self._done.is_set() or self._broken:
            return
        session, now = self.session, self.loop.time()
        idle = self.ctx.limits.idle_timeout_s
        try:
            if session.tel.state not in session.tel.compiled.final and now >= self.last_rx + idle:
                self.ctx.log.event(
                    "warning",
                    "call.idle",
                    f"no frame from the platform for {idle:.0f} s",
                    call_id=self.call_id,
                    leg=TELEPHONY,
                )
                self.last_rx = inf  # once
                self._spawn(self.hang_up("idle_timeout"))
            deadline = session.next_deadline()
            if deadline is not None and now >= deadline - TIMER_SLACK_S:
                self._execute(session.on_timer(max(now, deadline)))
            if session.finished:
                self._done.set()
            self._reschedule = False
            self._arm_timer()
        except Exception as exc:
            self._fail(exc)

    async def _cleanup(self) -> None:
        self._done.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ai_ws = self.ai_ws
        if ai_ws is not None and self._ai_task is not None and not self._ai_task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ai_ws.close(), 2.0)
        task = self._ai_task
        if task is not None and not task.done():
            task.cancel()
        for waiting in (*((task,) if task is not None else ()), *self._background):
            with contextlib.suppress(BaseException):
                await waiting
        self.session.release()
        for ws in (self.tel_ws, self.ai_ws):
            if ws is not None:
                ws.detach()
