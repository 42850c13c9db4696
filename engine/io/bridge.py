"""One live call: a :class:`CallBridge` drives a sans-I/O ``CallSession`` from two sockets.

The server makes one bridge per accepted platform connection and awaits :meth:`CallBridge.run`.
Three tasks feed the session, each with ``loop.time()`` as ``now``:

* the telephony pump (``run`` itself): every frame from the platform;
* the AI task: opens the AI leg when the core asks (:mod:`engine.io.ai_client`), then every
  frame from the AI provider;
* the timer task: sleeps until ``session.next_deadline()`` (an absolute deadline, so pacing
  error never accumulates) and calls ``on_timer``; it also enforces the idle timeout.

Every session call and the execution of the actions it returns happen under one per-call lock,
so frames leave in exactly the order the core produced them even when a send waits on a slow
peer (backpressure instead of reordering). Closing a socket never waits under the lock.

Whatever goes wrong in one call (a bug included) is logged and ends that call only: both legs
are closed and the session is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from math import inf
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from engine.config import AIFailurePolicy, Limits
from engine.core.actions import AI, TELEPHONY, Action, CloseLeg, Notice, OpenLeg, Send
from engine.core.session import AITarget, CallSession
from engine.errors import CLOSE_INTERNAL_ERROR
from engine.io.ai_client import Attempt, can_retarget, open_ai_leg, retarget
from engine.io.logs import JsonLog
from engine.io.metrics import FRAME_TIME_SAMPLE, Metrics

#: after the caller's socket closes, how long the AI leg may take to wind down (the protocol's
#: own ai_close_timeout normally ends it first)
WIND_DOWN_S = 5.0


@dataclass
class BridgeContext:
    """What every bridge of one server shares."""

    limits: Limits
    policy: AIFailurePolicy
    log: JsonLog
    metrics: Metrics
    fallback: AITarget | None = None


class CallBridge:
    def __init__(
        self, session: CallSession, telephony: ServerConnection, ctx: BridgeContext
    ) -> None:
        self.session = session
        self.tel_ws = telephony
        self.ai_ws: ClientConnection | None = None
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.outcome: str | None = None  # set by whatever ends the call unusually
        self.last_rx = self.loop.time()
        self._ai_task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._scheduled = inf
        self._done = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def call_id(self) -> str:
        return self.session.call_id

    # ------------------------------------------------------------------ the call's life

    async def run(self) -> str:
        """Run the call to its end; returns its outcome (see :data:`engine.io.metrics.OUTCOMES`)."""
        session, metrics = self.session, self.ctx.metrics
        frame_time = metrics.frame_time[TELEPHONY]
        count = 0
        self._timer_task = self.loop.create_task(self._timer_loop())
        code: int | None = None
        try:
            try:
                async for frame in self.tel_ws:
                    self.last_rx = now = self.loop.time()
                    count += 1
                    async with self.lock:
                        if count % FRAME_TIME_SAMPLE:
                            actions = session.receive_telephony(frame, now)
                        else:
                            started = time.perf_counter()
                            actions = session.receive_telephony(frame, now)
                            frame_time.observe(time.perf_counter() - started)
                        await self._execute(actions)
                    self._poke()
            except ConnectionClosed:
                pass
            rcvd = self.tel_ws.protocol.close_rcvd
            code = rcvd.code if rcvd is not None else None
            await self._call(lambda now: session.telephony_closed(now, code))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), WIND_DOWN_S)
        except Exception as exc:  # a bug in one call must not reach the server or other calls
            self.outcome = "error"
            self.ctx.log.event(
                "error", "call.error", f"{type(exc).__name__}: {exc}", call_id=self.call_id
            )
            await self._close_tel(CLOSE_INTERNAL_ERROR, "internal error")
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
        session = self.session
        async with self.lock:
            await self._execute(session.hang_up(self.loop.time()))
        self._poke()
        hangup = session.tel.peer.hangup
        await self._close_tel(hangup.close_code, hangup.close_reason)

    # ------------------------------------------------------------------ actions

    async def _call(self, fn: Callable[[float], list[Action]]) -> None:
        async with self.lock:
            await self._execute(fn(self.loop.time()))
        self._poke()

    async def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                assert isinstance(action, Send)
                ws = self.tel_ws if action.leg == TELEPHONY else self.ai_ws
                if ws is None:
                    continue
                try:
                    if action.binary:
                        await ws.send(action.data)
                    else:
                        await ws.send(action.data, text=True)
                except ConnectionClosed:
                    continue  # that leg's pump reports the close
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

    # ------------------------------------------------------------------ the AI leg

    async def _ai_leg(self, first: OpenLeg) -> None:
        session, ctx = self.session, self.ctx
        attempts = [Attempt(first.url, first.headers, first.subprotocols, session.ai.peer.name)]
        fallback = ctx.fallback
        if fallback is not None:
            ws_spec = fallback.peer.websocket
            assert ws_spec is not None
            attempts.append(
                Attempt(
                    fallback.url or ws_spec.url,
                    fallback.headers if fallback.headers is not None else ws_spec.headers,
                    ws_spec.subprotocols,
                    fallback.peer.name,
                )
            )

        def before_fallback() -> bool:
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
                "info",
                "ai.fallback",
                f"trying fallback AI provider {fallback.peer.name!r}",
                call_id=self.call_id,
                leg=AI,
            )
            return True

        try:
            ws, _, error = await open_ai_leg(
                attempts,
                ctx.policy,
                ctx.limits.ai_connect_timeout_s,
                ctx.limits.max_message_bytes,
                log=ctx.log,
                metrics=ctx.metrics,
                call_id=self.call_id,
                before_fallback=before_fallback,
            )
        except asyncio.CancelledError:
            return
        if ws is None:
            self.outcome = self.outcome or "ai_unreachable"
            ctx.log.event("warning", "ai.connect_failed", f"AI provider unreachable: {error}",
                          call_id=self.call_id, leg=AI)
            await self._call(lambda now: session.ai_failed(now, error))
            return
        if session.ai.state != "connecting":  # the call ended (or timed out) meanwhile
            await ws.close()
            return
        self.ai_ws = ws
        await self._call(session.ai_opened)
        frame_time = ctx.metrics.frame_time[AI]
        count = 0
        try:
            async for frame in ws:
                count += 1
                async with self.lock:
                    if count % FRAME_TIME_SAMPLE:
                        actions = session.receive_ai(frame, self.loop.time())
                    else:
                        started = time.perf_counter()
                        actions = session.receive_ai(frame, self.loop.time())
                        frame_time.observe(time.perf_counter() - started)
                    await self._execute(actions)
                self._poke()
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        code = rcvd.code if rcvd is not None else None
        if session.ai.state == "active" and session.tel.state not in session.tel.compiled.final:
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
        await self._call(lambda now: session.ai_closed(now, None))

    # ------------------------------------------------------------------ timers

    def _poke(self) -> None:
        """After any session call: wake the timer task if the next deadline moved earlier."""
        session = self.session
        if session.finished:
            self._done.set()
        elif not session.deadline_changed:
            return  # most media frames: nothing that could bring a deadline forward
        session.deadline_changed = False
        wake = self._wake
        if wake is not None and not wake.done():
            deadline = session.next_deadline()
            if self._done.is_set() or (deadline is not None and deadline < self._scheduled):
                wake.set_result(None)

    async def _timer_loop(self) -> None:
        loop, session, idle = self.loop, self.session, self.ctx.limits.idle_timeout_s
        while not self._done.is_set():
            deadline = session.next_deadline()
            idle_at = (
                self.last_rx + idle if session.tel.state not in session.tel.compiled.final else inf
            )
            target = min(deadline if deadline is not None else inf, idle_at)
            self._scheduled = target
            wake = self._wake = loop.create_future()
            handle = loop.call_at(target, _resolve, wake) if target != inf else None
            try:
                await wake
            finally:
                if handle is not None:
                    handle.cancel()
            if self._done.is_set():
                return
            now = loop.time()
            if now >= idle_at:
                self.ctx.log.event(
                    "warning",
                    "call.idle",
                    f"no frame from the platform for {idle:.0f} s",
                    call_id=self.call_id,
                    leg=TELEPHONY,
                )
                self._spawn(self.hang_up("idle_timeout"))
                self.last_rx = inf  # once
                continue
            deadline = session.next_deadline()
            # Timers may fire a hair early (uvloop has millisecond resolution): round up.
            if deadline is not None and now >= deadline - 0.002:
                await self._call(functools.partial(_on_timer, session, deadline))

    async def _cleanup(self) -> None:
        self._done.set()
        tasks = [t for t in (self._timer_task, self._ai_task) if t is not None]
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        ai_ws = self.ai_ws
        if ai_ws is not None and self._ai_task is not None and not self._ai_task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ai_ws.close(), 2.0)
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in (*tasks, *self._background):
            with contextlib.suppress(BaseException):
                await task
        self.session.release()


def _on_timer(session: CallSession, due: float, now: float) -> list[Action]:
    return session.on_timer(max(now, due))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
