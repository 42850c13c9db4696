"""``callbridge serve``: the WebSocket and HTTP front door of a callbridge process.

:func:`serve_main` is the command; :class:`BridgeServer` is the server (tests start one on an
ephemeral port with :meth:`BridgeServer.start`). One ``websockets.asyncio`` server carries:

``/ws-adapter/{provider}/{call_type}/{agent_id}/{outlet_id}/{virtual_number}``
    a platform's call (the adapter guide's route), checked in ``process_request`` before the upgrade: 404 for
    an unknown provider, 400 for a bad part, 503 when full or draining
``/ws/v1/echo``   the embedded echo AI (:mod:`engine.io.echo`)
``/healthz``      200 while the process runs
``/readyz``       200 once specs are compiled and the audio kernels warmed; 503 while draining
``/metrics``      Prometheus text format

Signals: SIGTERM (and SIGINT) drain: no new calls, live calls get ``drain_timeout`` to end on
their own, then both legs are hung up cleanly. SIGHUP reloads specs and config for new calls;
live calls keep what they started with, and a broken new spec or config is logged with its
located errors and ignored.

``callbridge serve --workers N`` (or ``workers: N`` in the config file) with N > 1 runs a
supervisor instead (:mod:`engine.io.workers`) whose N workers are each a ``BridgeServer`` with
``worker=I``: listening with SO_REUSEPORT on the shared port once its kernels are warm (so a
restarted worker's first calls do not wait on them), metrics in prometheus_client's
multiprocess mode, a ``worker`` field on every log line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import ssl
import time
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response

from engine import native
from engine.auth.gate import Gate, Upgrade
from engine.auth.schemes import Denial
from engine.config import DEFAULT, ECHO_TARGET, ECHO_URL, Config, Target, TLSFiles, load_config, redact_url
from engine.core.session import AITarget, CallRoute, CallSession
from engine.errors import ProtocolErrorKind, RemoteProtocolError, SpecErrors, UsageError
from engine.io.bridge import BridgeContext, CallBridge
from engine.io.direct import DirectServerConnection, Message
from engine.io.echo import echo_ai
from engine.io.logs import JsonLog, Throttle
from engine.io.metrics import Metrics
from engine.io.routing import ADAPTER_PREFIX, ECHO_PATH, Refusal, parse_adapter_path, split_path_secret
from engine.io.tls import loopback_client_context, reload_certificate, server_context
from engine.io.workers import WorkerLog, announce_ready, check_worker_env, supervise, supervisor_gone
from engine.language.detect import detect_provider
from engine.language.loader import SpecSet, load_specs

_PENDING_ATTR = "_callbridge_call"  # what process_request decided, kept on the connection
AUTO = "auto"  # /ws-adapter/auto/...: the platform is detected from its first message(s)
AUTO_DETECT_TIMEOUT_S = 10.0
#: worker mode: how often live calls' frame counts are folded into the shared metrics
FRAME_FOLD_INTERVAL_S = 1.0
#: how often the summaries of throttled log lines (refused upgrades) are written
SUMMARY_INTERVAL_S = 5.0


class BridgeServer:
    """Owns the listening socket, the specs and config in force, and the live calls."""

    def __init__(
        self,
        config: Config,
        specs: SpecSet,
        *,
        log: JsonLog | None = None,
        spec_root: Path | None = None,
        worker: int | None = None,
        freeze: bool = False,
    ) -> None:
        self.config = config
        self.freeze = freeze  # the process is this server's: freeze its heap once warm (freeze_heap)
        self.specs = specs
        self.spec_root = spec_root
        self.worker = worker  # None: a lone server; else its index among `serve --workers N`
        self.log = log or JsonLog(level=config.log_level, show_numbers=config.show_numbers)
        self.metrics = Metrics(
            lambda: [bridge.session for bridge in list(self.bridges)], multiprocess=worker is not None
        )
        self.bridges: set[CallBridge] = set()
        self.ready = False
        self.draining = False
        self.server: Server | None = None
        self.port = 0
        self.echo_url = ""
        self.tls: ssl.SSLContext | None = None
        self.gate = self._make_gate(config)
        self.throttle = Throttle()  # log lines strangers can cause: refused upgrades
        self.tls_throttle = Throttle(burst=1, window_s=60.0)  # "TLS sent to a plain listener": once a minute
        self._ctx = self._context(config)
        self._stopped = asyncio.Event()
        self._fold_task: asyncio.Task[None] | None = None
        self._summary_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen (on the config's host and port unless given; port 0 picks a free one, then read
        ``self.port``) and return; calls are served in the background until :meth:`drain` or
        :meth:`close`. ``/readyz`` answers ready once the audio kernels are warm.

        Serves ``wss://`` when the config has ``listen.tls``. Raises
        :exc:`~engine.errors.UsageError` when the address cannot be listened on or the
        certificate cannot be loaded.
        """
        host = host if host is not None else self.config.host
        port = port if port is not None else self.config.port
        if self.config.tls is not None:
            self.tls = server_context(self.config.tls.cert, self.config.tls.key)
        if self.worker is not None:
            # the kernel hands a listening worker its share of new calls at once, and nothing
            # answers /readyz for one worker of a shared port: so a (re)started worker warms
            # its kernels first, or its first calls wait a second on the numba cache load
            await self._warm_up()
        # a worker shares its port with the others: the kernel spreads connections over them
        extra: dict[str, Any] = {"reuse_port": True} if self.worker is not None else {}
        try:
            self.server = await serve(
                self._handler,
                host,
                port,
                process_request=self._process_request,
                select_subprotocol=self._select_subprotocol,
                compression=None,  # per connection below, where a platform spec asks for deflate
                max_size=self.config.limits.max_message_bytes,
                ping_interval=None,  # platforms do not answer pings reliably; idle timeout instead
                server_header="callbridge",
                # a factory, not a class: websockets only calls it (the annotation says type)
                create_connection=self._connection,  # type: ignore[arg-type]
                ssl=self.tls,
                **extra,
            )
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        sock = next(iter(self.server.sockets))
        self.port = sock.getsockname()[1]
        echo_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        scheme = "wss" if self.tls is not None else "ws"
        self.echo_url = f"{scheme}://{echo_host}:{self.port}{ECHO_PATH}"
        self._ctx = self._context(self.config)
        self.log.event(
            "info",
            "server.listening" if self.worker is None else "worker.listening",
            f"listening on {scheme}://{host}:{self.port}",
            fields={"host": host, "port": self.port, "specs": str(self.specs.root), "engine": native.status()},
        )
        if self.worker is None or self.worker == 0:
            self._warn_open()
        if not self.ready:
            asyncio.get_running_loop().create_task(self._warm_up())
        if self.metrics.multiprocess:
            self._fold_task = asyncio.get_running_loop().create_task(self._fold_frames())
        self._summary_task = asyncio.get_running_loop().create_task(self._write_summaries())
        if self.freeze:  # the process is ours: its collections are ours to report
            self.metrics.gc_pauses.install()

    async def _fold_frames(self) -> None:
        """Worker mode: live calls' frames into the shared counter, every second (see metrics)."""
        while True:
            await asyncio.sleep(FRAME_FOLD_INTERVAL_S)
            self.metrics.fold()

    async def _write_summaries(self) -> None:
        """Every few seconds: one line per throttled kind of refusal, with how many were held back."""
        while True:
            await asyncio.sleep(SUMMARY_INTERVAL_S)
            self._flush_summaries()

    def _flush_summaries(self) -> None:
        now = time.monotonic()
        for throttle in (self.throttle, self.tls_throttle):
            for key, count in throttle.summaries(now):
                self.log.event(
                    "warning",
                    f"{key[0]}.suppressed",
                    f"{count} more like the last {throttle.burst} not logged ({', '.join(key[1:]) or 'various'})",
                    fields={"count": count, "kind": list(key)},
                )

    def _warn_open(self) -> None:
        """One line per way in that takes calls with no credentials at all, at start-up."""
        gate, config = self.gate, self.config
        open_platforms = sorted(name for name in self.specs.providers if name not in gate.platforms)
        for i, route in enumerate(config.routes):
            if route.auth is None and open_platforms:
                self.log.event(
                    "warning",
                    "auth.open_route",
                    f"route {i} ({_describe_route(route)} -> {route.target.ai}) takes calls without credentials "
                    f"from {', '.join(open_platforms)}: configure platforms.NAME.auth or the route's auth",
                    fields={"route": i, "platforms": open_platforms},
                )
        if open_platforms and not any(r.agent_id is None and r.outlet_id is None for r in config.routes):
            self.log.event(
                "warning",
                "auth.open",
                f"calls from {', '.join(open_platforms)} are taken without credentials (anyone who can "
                "reach the port can place one); see docs/platforms/ for each platform's auth",
                fields={"platforms": open_platforms},
            )

    async def _warm_up(self) -> None:
        """Load the audio kernels (numba's cache: about a second) and run each once, off the
        event loop, so that no call waits on it."""
        started = time.perf_counter()
        await asyncio.to_thread(_load_and_warm_kernels)
        self.log.event(
            "info",
            "server.warm",
            f"audio kernels warmed in {time.perf_counter() - started:.2f} s",
        )
        if self.freeze:
            freeze_heap()
        self.ready = True

    async def wait_closed(self) -> None:
        """Wait until the server has stopped (after :meth:`close`, or :meth:`drain`, from anywhere)."""
        await self._stopped.wait()

    async def drain(self, timeout: float | None = None) -> None:
        """Stop taking calls, let live ones finish (up to ``timeout``), hang up the rest, stop."""
        if self.draining:
            return
        self.draining = True
        timeout = self.config.limits.drain_timeout_s if timeout is None else timeout
        self.log.event(
            "info",
            "server.draining",
            f"draining {len(self.bridges)} live calls (up to {timeout:g} s)",
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.bridges and loop.time() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
        if self.bridges:
            self.log.event("info", "server.hangup_all", f"hanging up {len(self.bridges)} calls still live")
            await asyncio.gather(*(b.hang_up("drained") for b in list(self.bridges)), return_exceptions=True)
            end = loop.time() + 5.0
            while self.bridges and loop.time() < end:
                await asyncio.sleep(0.02)
        await self.close()

    async def close(self) -> None:
        """Stop listening now, without waiting for live calls (use :meth:`drain` for that)."""
        self.metrics.gc_pauses.remove()
        if self._summary_task is not None:
            self._summary_task.cancel()
            self._flush_summaries()
        if self._fold_task is not None:
            self._fold_task.cancel()
            self.metrics.fold()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5.0)
        self.log.event("info", "server.stopped", "stopped")
        self._stopped.set()

    async def reload(self, config_file: str | None) -> bool:
        """Reload specs (and the config file, if any) for new calls. False when rejected."""
        try:
            config = await asyncio.to_thread(load_config, config_file) if config_file else self.config
            root = self.spec_root or config.specs
            specs = await asyncio.to_thread(load_specs, root)
            errors = config.check_specs(specs.ai_providers, specs.providers)
            if errors:
                raise SpecErrors(errors)
            if self.tls is not None:
                tls = config.tls or self.config.tls
                assert tls is not None
                reload_certificate(self.tls, tls.cert, tls.key)
        except UsageError as exc:  # a renewed certificate that cannot be loaded: keep the old one
            self.log.event("error", "reload.rejected", f"{exc}; kept the previous specs, config and certificate")
            return False
        except SpecErrors as exc:
            for error in exc.errors:
                self.log.event("error", "reload.rejected", str(error))
            self.log.event(
                "error",
                "reload.rejected",
                f"kept the previous specs and config ({len(exc.errors)} errors)",
            )
            return False
        if (config.host, config.port, config.tls is None) != (self.config.host, self.config.port, self.tls is None):
            self.log.event("warning", "reload.listen", "listen host/port/TLS on-off changes need a restart; ignored")
        self.config = replace(config, host=self.config.host, port=self.config.port, tls=self.config.tls)
        nonces = self.gate.nonces
        self.gate = self._make_gate(self.config)
        self.gate.nonces = nonces  # a signature seen before the reload is still a replay after it
        self.specs = specs
        if self.freeze:
            freeze_heap(refreeze=True)
        self.log.threshold = JsonLog(level=config.log_level).threshold
        self.log.show_numbers = config.show_numbers
        self._ctx = self._context(self.config)
        self.log.event(
            "info",
            "reload.done",
            f"reloaded {len(specs.providers)} platform and "
            f"{len(specs.ai_providers)} AI provider specs; live calls untouched",
        )
        return True

    def _context(self, config: Config) -> BridgeContext:
        fallback = None
        if config.ai_failure.fallback is not None:
            fallback = self._ai_target(config.ai_failure.fallback, self.specs)
        echo_ssl = loopback_client_context() if self.tls is not None else None
        return BridgeContext(
            config.limits, config.ai_failure, self.log, self.metrics, fallback, self.echo_url, echo_ssl
        )

    @staticmethod
    def _make_gate(config: Config) -> Gate:
        return Gate(
            config.platforms,
            public_url=config.public_url,
            trusted_proxies=config.trusted_proxies,
            echo_allow_from=config.echo_allow_from,
        )

    def _connection(self, *args: Any, **kwargs: Any) -> DirectServerConnection:
        """``websockets``' connection factory: a direct connection, which on a plain listener
        reports a TLS ClientHello instead of dropping it unexplained."""
        connection = DirectServerConnection(*args, **kwargs)
        if self.tls is None:
            connection.on_tls_hello = self._tls_hello
        return connection

    def _tls_hello(self, connection: DirectServerConnection) -> None:
        self.metrics.tls_to_plain.inc()
        if self.tls_throttle.admit(("tls", "plain_listener"), time.monotonic()):
            peer = connection.remote_address
            self.log.event(
                "warning",
                "tls.plain_listener",
                "TLS sent to a plain listener: a client dialled wss:// but this port serves ws:// "
                "(set listen.tls, or put a TLS terminator in front)",
                fields={"peer": peer[0] if peer else None},
            )

    def _ai_target(self, target: Target, specs: SpecSet) -> AITarget:
        url = self.echo_url if target.url == ECHO_URL else target.url
        return AITarget(
            specs.ai_providers[target.ai],
            url=url,
            headers=target.headers,
            account_id=target.account_id,
        )

    # ------------------------------------------------------------------ HTTP side

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.ready and not self.draining:
                return connection.respond(HTTPStatus.OK, "ready\n")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n" if self.draining else "warming up\n")
        if path == "/metrics":
            response = connection.respond(HTTPStatus.OK, "")
            response.body = self.metrics.render()
            del response.headers["Content-Type"], response.headers["Content-Length"]
            response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
            response.headers["Content-Length"] = str(len(response.body))
            return response
        if path == ECHO_PATH:
            denial = self.gate.check_echo(self._upgrade(connection, request))
            if denial is not None:
                return self._deny(connection, "echo", denial, basic=False)
            setattr(connection, _PENDING_ATTR, None)
            return None
        if not path.startswith(ADAPTER_PREFIX):
            return self._refuse(connection, Refusal(404, f"no route {path[:80]!r}"))
        specs = self.specs
        target, secret = split_path_secret(request.path)
        route = parse_adapter_path(
            target,
            [*specs.providers, AUTO],
            dict(request.headers.raw_items()),
            self.config.default_region,
        )
        if isinstance(route, Refusal):
            return self._refuse(connection, route)
        # who may call is decided before anything is allotted: a refusal costs no call slot
        upgrade = self._upgrade(connection, request, secret)
        admitted, denial, basic = self._admit(route, upgrade)
        if denial is not None:
            return self._deny(connection, route.provider, denial, basic=basic)
        if self.draining:
            return self._refuse(connection, Refusal(503, "draining: not taking new calls"))
        if len(self.bridges) >= self.config.limits.max_calls:
            return self._refuse(connection, Refusal(503, f"at capacity ({self.config.limits.max_calls} calls)"))
        if route.provider == AUTO:  # the platform is told from its first message(s)
            self._take_call(connection, (route, specs, self.config, self._ctx, admitted))
            return None
        peer = specs.providers[route.provider]
        if peer.connection.compression not in ("none", "", None):
            # Only a platform that asks for permessage-deflate gets it (it costs 2x CPU).
            connection.protocol.available_extensions = [ServerPerMessageDeflateFactory()]
        limit = min(self.config.limits.max_message_bytes, peer.connection.max_message_bytes)
        connection.protocol.max_message_size = limit
        self._take_call(connection, (route, specs, self.config, self._ctx, admitted))
        return None

    def _upgrade(self, connection: ServerConnection, request: Request, secret: str | None = None) -> Upgrade:
        peer = connection.remote_address
        return Upgrade.from_request(
            request.path,
            request.headers.raw_items(),
            peer[0] if peer else None,
            tls=self.tls is not None,
            now=time.time(),
            path_secret=secret,
        )

    def _admit(self, route: CallRoute, upgrade: Upgrade) -> tuple[frozenset[str], Denial | None, bool]:
        """The platforms this upgrade may be a call from (the route's own, or for ``auto`` every
        one it passes the check of), or why none; and whether a Basic challenge applies."""
        gate, specs = self.gate, self.specs
        route_auth = self.config.route_auth(route.agent_id, route.outlet_id)
        names = list(specs.providers) if route.provider == AUTO else [route.provider]
        admitted: set[str] = set()
        denials: list[Denial] = []
        basic = False
        for name in names:
            schemes = specs.providers[name].auth
            creds = gate.credentials(name, route_auth)
            denial = gate.check(name, schemes, creds, upgrade)
            if denial is None:
                admitted.add(name)
                continue
            denials.append(denial)
            basic = basic or (creds is not None and bool(creds.basic) and any(s.kind == "basic" for s in schemes))
        if admitted:
            return frozenset(admitted), None, False
        return frozenset(), next((d for d in denials if d.status == 403), denials[0]), basic

    def _deny(self, connection: ServerConnection, provider: str, denial: Denial, *, basic: bool) -> Response:
        """Refuse an upgrade that failed authentication: 401 or 403 with a body that says no more
        than that, a counted metric, and a log line (throttled per provider and reason)."""
        self.metrics.auth_failures.labels(provider, denial.reason).inc()
        self.metrics.rejected.labels(str(denial.status)).inc()
        if self.throttle.admit(("auth", provider, denial.reason), time.monotonic()):
            peer = connection.remote_address
            self.log.event(
                "warning",
                "auth.refused",
                f"{provider}: upgrade refused ({denial.reason}): {denial.detail}",
                fields={"status": denial.status, "reason": denial.reason, "peer": peer[0] if peer else None},
            )
        body = "authentication required\n" if denial.status == 401 else "forbidden\n"
        response = connection.respond(denial.status, body)
        if basic and denial.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="callbridge", charset="UTF-8"'
        return response

    @staticmethod
    def _take_call(connection: ServerConnection, pending: tuple[Any, ...]) -> None:
        """Mark an upgrade as a call: its messages go straight to its bridge (engine.io.direct)."""
        setattr(connection, _PENDING_ATTR, pending)
        assert isinstance(connection, DirectServerConnection)
        connection.direct = True

    def _refuse(self, connection: ServerConnection, refusal: Refusal) -> Response:
        self.metrics.rejected.labels(str(refusal.status)).inc()
        if self.throttle.admit(("upgrade", str(refusal.status)), time.monotonic()):
            self.log.event("warning", "upgrade.refused", refusal.message, fields={"status": refusal.status})
        return connection.respond(refusal.status, refusal.message + "\n")

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> Any:
        pending = getattr(connection, _PENDING_ATTR, None)
        if not pending:
            return None
        route, specs = pending[0], pending[1]
        if route.provider == AUTO:  # any subprotocol some platform spec speaks
            wanted = tuple(n for peer in specs.providers.values() for n in peer.connection.subprotocols)
        else:
            wanted = specs.providers[route.provider].connection.subprotocols
        for name in wanted:
            if name in offered:
                return name
        return None  # the platform offered none we know: carry on without one

    # ------------------------------------------------------------------ calls

    async def _handler(self, ws: ServerConnection) -> None:
        pending = getattr(ws, _PENDING_ATTR, None)
        if pending is None:
            await echo_ai(ws)
            return
        assert isinstance(ws, DirectServerConnection)
        route, specs, config, ctx, admitted = pending
        await self._run_call(ws, route, specs, config, ctx, admitted)

    async def _run_call(
        self,
        ws: DirectServerConnection,
        route: CallRoute,
        specs: SpecSet,
        config: Config,
        ctx: BridgeContext,
        admitted: frozenset[str],
    ) -> None:
        loop = asyncio.get_running_loop()
        first: list[Message] = []
        if route.provider == AUTO:
            detected = await self._detect(ws, route, specs, first)
            if detected is None:
                return
            if detected not in admitted:  # it passed some platform's check, not this one's
                self.metrics.auth_failures.labels(detected, "scheme").inc()
                self.log.event("warning", "auth.refused", f"auto: the call is from {detected}, whose "
                               "credentials the upgrade did not present", leg="telephony")
                await ws.close(1008, "not authenticated for this platform")
                return
            route = replace(route, provider=detected)
        target = config.route_for(route.agent_id, route.outlet_id)
        if target is None:
            target = ECHO_TARGET
        if target.default_region:
            route = replace(route, default_region=target.default_region)
        try:
            session = CallSession(
                specs,
                route,
                self._ai_target(target, specs),
                now=loop.time(),
                playout_lead_ms=config.limits.playout_lead_ms,
            )
        except Exception as exc:  # nothing about one call may take the server down
            self.log.event("error", "call.setup_failed", f"{type(exc).__name__}: {exc}")
            await ws.close(1011, "internal error")
            return
        bridge = CallBridge(session, ws, ctx)
        self.bridges.add(bridge)
        self.metrics.active_calls.inc()
        self.log.event(
            "info",
            "call.accepted",
            f"{route.provider} {route.call_type} call for agent "
            f"{route.agent_id} outlet {route.outlet_id} -> {target.ai} at "
            f"{redact_url(session.ai_target.url)}",
            call_id=session.call_id,
            leg="telephony",
            fields={"caller_id": route.caller_id, "virtual_number": route.virtual_number},
        )
        outcome = "error"
        try:
            # what detection read goes first, in order, before the rest of the stream
            outcome = await bridge.run(first)
        finally:
            self.bridges.discard(bridge)
            self.metrics.active_calls.dec()
            self.metrics.calls.labels(route.provider, outcome).inc()
            self.metrics.playout_underruns.inc(session.playout.stats.underruns)
            self.metrics.frames.call_ended(session)
            self.log.event(
                "info",
                "call.ended",
                f"call ended: {outcome}",
                call_id=session.call_id,
                fields={
                    "outcome": outcome,
                    "hangup_reason": session.hangup_reason,
                    "duration_s": round(loop.time() - session.started_at, 3),
                    "stats": session.counters(),
                    "marks": dict(session.ledger.resolved),
                },
            )

    async def _detect(
        self, ws: DirectServerConnection, route: CallRoute, specs: SpecSet, first: list[Message]
    ) -> str | None:
        """``/ws-adapter/auto/...``: read the first message (a second one when the first is
        ambiguous, e.g. a bare ``connected``), name the platform by the specs' patterns and
        fingerprints (:func:`engine.language.detect.detect_provider`). ``None``: refused and closed."""
        env = {
            "query": dict(route.query),
            "path": {},
            "header": {k.lower(): v for k, v in route.headers.items()},
        }
        while True:
            try:
                first.append(await ws.next_message(AUTO_DETECT_TIMEOUT_S))
            except (TimeoutError, EOFError):
                await ws.close(1008, "no message to tell the platform from")
                return None
            try:
                name = detect_provider(specs, first, env)
            except RemoteProtocolError as exc:
                if exc.kind is ProtocolErrorKind.AMBIGUOUS and len(first) < 2:
                    continue
                self.log.event("warning", "call.undetected", exc.message, leg="telephony")
                await ws.close(exc.close_code, exc.message[:120])
                return None
            self.log.event("info", "call.detected", f"auto: the platform is {name}", leg="telephony")
            return name


# ---------------------------------------------------------------------- the command


def _install_signals(server: BridgeServer, config_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def drain() -> None:
        spawn(server.drain())

    def reload() -> None:
        server.log.event("info", "reload.start", "SIGHUP: reloading specs and config")
        spawn(server.reload(config_file))

    for sig, fn in ((signal.SIGTERM, drain), (signal.SIGINT, drain), (signal.SIGHUP, reload)):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(sig, fn)


def _load_and_warm_kernels() -> None:
    from engine.dsp import kernels

    kernels.warm_up()


def freeze_heap(refreeze: bool = False) -> None:
    """Move what is alive now (modules, compiled specs, the numba kernels: ~150,000 objects) out
    of the cyclic garbage collector's sight.

    Otherwise every full collection walks all of it: a 30-80 ms stall of every live call
    (measured here), which a long-running server takes whenever enough calls' objects have
    survived into the oldest generation. Calls' own objects stay collectable.

    ``refreeze`` (a spec reload): thaw first, so that the replaced specs can be collected; the
    live calls' objects are frozen with the new specs, so any reference cycles they leave (a few
    dozen objects per call) wait for the next reload.
    """
    if refreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def _describe_route(route: Any) -> str:
    ids = (("agent", route.agent_id), ("outlet", route.outlet_id))
    parts = [f"{key} {value}" for key, value in ids if value is not None]
    return " ".join(parts) or "every call"


def _load_specs(config: Config, spec_root: Path | None) -> SpecSet:
    specs = load_specs(spec_root or config.specs)
    errors = config.check_specs(specs.ai_providers, specs.providers)
    if errors:
        raise SpecErrors(errors)
    return specs


async def _watch_supervisor(server: BridgeServer, supervisor: int) -> None:
    """Worker mode: drain if the supervisor goes away without telling us (e.g. SIGKILL)."""
    while not server.draining:
        if supervisor_gone(supervisor):
            server.log.event("warning", "worker.orphaned", "the supervisor is gone: draining")
            await server.drain()
            return
        await asyncio.sleep(1.0)


async def _serve(args: argparse.Namespace, config: Config, supervisor: int | None = None) -> int:
    spec_root = Path(args.specs) if getattr(args, "specs", None) else None
    specs = await asyncio.to_thread(_load_specs, config, spec_root)
    worker: int | None = getattr(args, "worker_index", None)
    log = None
    if worker is not None:
        log = WorkerLog(worker, level=config.log_level, show_numbers=config.show_numbers)
    server = BridgeServer(config, specs, log=log, spec_root=spec_root, worker=worker, freeze=True)
    await server.start(args.host, args.port)
    _install_signals(server, getattr(args, "config", None))
    watcher = None
    if worker is not None:
        announce_ready()
        assert supervisor is not None
        watcher = asyncio.get_running_loop().create_task(_watch_supervisor(server, supervisor))
    await server.wait_closed()
    if watcher is not None:
        watcher.cancel()
    return 0


def serve_main(args: argparse.Namespace) -> int:
    """Run ``callbridge serve`` until drained; errors are raised for the CLI to print.

    One process unless ``--workers`` (or the config's ``workers``) asks for more: then this
    process supervises that many workers (:func:`engine.io.workers.supervise`)."""
    config = load_config(args.config) if getattr(args, "config", None) else DEFAULT
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert and --tls-key go together")
    if cert and key:
        config = replace(config, tls=TLSFiles(Path(cert).resolve(), Path(key).resolve()))
    workers = getattr(args, "workers", None)
    workers = config.workers if workers is None else workers
    supervisor = None
    if getattr(args, "worker_index", None) is not None:
        supervisor = check_worker_env()
    elif workers > 1:
        # the specs are checked here too, so that a mistake is reported once, before any worker
        _load_specs(config, Path(args.specs) if getattr(args, "specs", None) else None)
        return supervise(args, config, workers)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(args, config, supervisor))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(args, config, supervisor))
