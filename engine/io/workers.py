"""``callbridge serve --workers N``: N worker processes on one port, and their supervisor.

With ``workers: 1`` (the default) none of this runs: ``callbridge serve`` is one process. With
N > 1 the ``serve`` command becomes a :class:`Supervisor` that takes no calls itself:

- it binds the listen address once with ``SO_REUSEPORT`` and keeps that socket (bound, never
  listening) for its lifetime: an address already in use is reported before any worker starts,
  and ``--port 0`` picks the one free port every worker then uses;
- it starts N workers, each a ``callbridge serve --worker-index I`` process (a full
  :class:`~engine.io.server.BridgeServer`) listening on that same host:port with
  ``SO_REUSEPORT``, so the kernel spreads new connections over them; a call lives entirely in
  the worker that accepted it. A worker tells the supervisor it listens with one line on its
  stdout (:data:`READY`); its logs go to the shared stderr with ``worker`` and ``pid`` fields
  (:class:`WorkerLog`). Once all N listen the supervisor logs ``server.listening`` with the
  port and the worker count;
- metrics: it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh temporary folder for the workers
  (removed at exit) and calls ``mark_process_dead`` for each worker that exits, so that
  ``/metrics`` from any worker adds up all of them (:class:`~engine.io.metrics.Metrics`);
- signals: SIGTERM and SIGINT are forwarded to every worker (each drains as a lone server
  would) and the supervisor exits once they all have, 0 if every worker exited cleanly;
  SIGHUP is forwarded (each worker reloads specs and config);
- a worker that exits when not asked to is logged and restarted; more than
  :data:`MAX_RESTARTS` restarts within :data:`RESTART_WINDOW_S` seconds, or a worker that
  fails before it first listens, stops everything with an error (exit 1).

Supervisor log lines carry no ``worker`` field; each worker's lines carry its index and pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine.config import Config
from engine.errors import CallbridgeError, UsageError
from engine.io.logs import JsonLog

#: the line a worker prints on its stdout once it listens (and handles signals)
READY = b"callbridge-worker listening\n"
#: restarts allowed within RESTART_WINDOW_S before the supervisor gives up
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
#: the most workers a config file or --workers may ask for
MAX_WORKERS = 256
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: the supervisor's pid, for its workers: one whose parent is no longer that pid drains
SUPERVISOR_ENV = "CALLBRIDGE_SUPERVISOR_PID"


# ---------------------------------------------------------------------- the worker side


class WorkerLog(JsonLog):
    """A :class:`JsonLog` whose every line also says which worker wrote it (index and pid)."""

    def __init__(
        self,
        worker: int,
        stream: TextIO | None = None,
        level: str = "info",
        show_numbers: bool = False,
    ) -> None:
        super().__init__(stream, level=level, show_numbers=show_numbers)
        self.worker = worker
        self._tag = {"worker": worker, "pid": os.getpid()}

    def event(
        self,
        level: str,
        code: str,
        message: str,
        *,
        call_id: str = "",
        leg: str = "",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """As :meth:`JsonLog.event`, with ``worker`` and ``pid`` added to the line."""
        if not self.enabled(level):
            return
        tagged = {**fields, **self._tag} if fields else self._tag
        super().event(level, code, message, call_id=call_id, leg=leg, fields=tagged)


def check_worker_env() -> int:
    """The supervisor's pid. A worker needs the supervisor's metrics folder and pid; started
    by hand it would have neither."""
    folder = os.environ.get(MULTIPROC_ENV)
    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if not folder or not os.path.isdir(folder) or not supervisor.isdigit():
        raise UsageError(
            "--worker-index is set by `callbridge serve --workers N` for its workers "
            f"(it needs ${MULTIPROC_ENV} and ${SUPERVISOR_ENV}); use --workers instead"
        )
    return int(supervisor)


def supervisor_gone(supervisor: int) -> bool:
    """True once this worker's supervisor has exited (the worker was handed to another parent)."""
    return os.getppid() != supervisor


def announce_ready() -> None:
    """Tell the supervisor this worker listens (one line on stdout, which it reads)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.buffer.write(READY)
        sys.stdout.buffer.flush()


# ---------------------------------------------------------------------- the supervisor


def reserve(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` with SO_REUSEPORT (not listening) to check it and, for port 0,
    pick the port every worker will share. Kept open while the supervisor runs.

    First the address is bound once without SO_REUSEPORT: with it alone, a port that another
    SO_REUSEPORT server of the same user listens on (say a second ``callbridge serve
    --workers``) would be joined silently and share its connections."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("--workers needs SO_REUSEPORT, which this system does not have")

    def bind(address: Any, reuse_port: bool) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with bind(address, reuse_port=False) as probe:
            address = probe.getsockname()  # with port 0: the port picked
        return bind(address, reuse_port=True)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    started: float
    ready: bool = False
    reload_pending: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Starts, watches, signals and restarts the workers of one ``callbridge serve``."""

    def __init__(
        self,
        args: argparse.Namespace,
        config: Config,
        workers: int,
        *,
        log: JsonLog | None = None,
    ) -> None:
        self.args = args
        self.config = config
        self.count = workers
        self.log = log or JsonLog(level=config.log_level, show_numbers=config.show_numbers)
        self.host: str = args.host if args.host is not None else config.host
        self.port: int = args.port if args.port is not None else config.port
        self.workers: dict[int, _Worker] = {}
        self.listening = False  # every worker has listened once
        self.stopping = False
        self.failed = False  # a worker exited non-zero while stopping, or something was fatal
        self.fatal: str | None = None
        self.metrics_dir = ""
        self._restarts: deque[float] = deque()
        self._starting = 0  # spawns in flight
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -------------------------------------------------------------- running

    async def run(self) -> int:
        """Run until every worker has exited; 0 when all exited cleanly after SIGTERM/SIGINT."""
        sock = reserve(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.metrics_dir = tempfile.mkdtemp(prefix="callbridge-metrics-")
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        try:
            for sig in handled:
                loop.add_signal_handler(sig, self._on_signal, sig)
            for index in range(self.count):
                if self.stopping:
                    break
                await self._spawn(index)
            self._check_done()
            await self._done.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            for worker in list(self.workers.values()):  # only if run() itself was interrupted
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
            sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        code = 1 if self.failed else 0
        self.log.event(
            "info" if code == 0 else "error",
            "server.stopped",
            f"stopped: all workers exited (exit code {code})",
            fields={"workers": self.count, "pid": os.getpid()},
        )
        if self.fatal:
            raise CallbridgeError(self.fatal)
        return code

    def _command(self, index: int) -> list[str]:
        args = self.args
        command = [sys.executable, "-m", "engine"]
        if getattr(args, "specs", None):
            command += ["--specs", str(args.specs)]
        command += ["serve"]
        if getattr(args, "config", None):
            command += ["--config", str(args.config)]
        if getattr(args, "tls_cert", None) and getattr(args, "tls_key", None):
            command += ["--tls-cert", str(args.tls_cert), "--tls-key", str(args.tls_key)]
        return [*command, "--host", self.host, "--port", str(self.port), "--worker-index", str(index)]

    async def _spawn(self, index: int) -> None:
        env = dict(os.environ, **{MULTIPROC_ENV: self.metrics_dir, SUPERVISOR_ENV: str(os.getpid())})
        self._starting += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(index),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            self._starting -= 1
            self._give_up(f"cannot start worker {index}: {exc.strerror or exc}")
            return
        worker = _Worker(index, proc, time.monotonic())
        self.workers[index] = worker
        self._starting -= 1
        self.log.event(
            "info",
            "worker.started",
            f"worker {index} started (pid {proc.pid})",
            fields={"worker_index": index, "worker_pid": proc.pid},
        )
        worker.watcher = self._spawn_task(self._watch(worker))
        if self.stopping:  # a signal came while it was being started
            self._send(worker, signal.SIGTERM)

    def _check_done(self) -> None:
        if self.stopping and not self.workers and not self._starting:
            self._done.set()

    def _spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch(self, worker: _Worker) -> None:
        stdout = worker.proc.stdout
        assert stdout is not None
        with contextlib.suppress(ValueError):  # a line beyond the reader's limit: stop reading
            async for line in stdout:
                if line == READY and not worker.ready:
                    self._on_ready(worker)
                else:  # nothing else should print, but do not hide it if something does
                    with contextlib.suppress(OSError, ValueError):
                        sys.stdout.buffer.write(line)
                        sys.stdout.buffer.flush()
        code = await worker.proc.wait()
        self._on_exit(worker, code)

    def _on_ready(self, worker: _Worker) -> None:
        worker.ready = True
        if worker.reload_pending:
            worker.reload_pending = False
            self._send(worker, signal.SIGHUP)
        if self.listening or self.stopping:
            return
        if len(self.workers) == self.count and all(w.ready for w in self.workers.values()):
            self.listening = True
            self.log.event(
                "info",
                "server.listening",
                f"listening on ws://{self.host}:{self.port} with {self.count} workers",
                fields={
                    "host": self.host,
                    "port": self.port,
                    "workers": self.count,
                    "pid": os.getpid(),
                    "metrics_dir": self.metrics_dir,
                },
            )

    def _on_exit(self, worker: _Worker, code: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        with contextlib.suppress(OSError):
            mark_process_dead(worker.pid, self.metrics_dir)
        fields = {"worker_index": worker.index, "worker_pid": worker.pid, "exit_code": code}
        what = f"worker {worker.index} (pid {worker.pid})"
        if self.stopping:
            # one stopped before it ever listened (so before its signal handlers) is no failure
            clean = code == 0 or not worker.ready
            self.failed = self.failed or not clean
            self.log.event(
                "info" if clean else "error",
                "worker.exited",
                f"{what} exited with code {code}",
                fields=fields,
            )
        elif not self.listening and not worker.ready:
            self.log.event("error", "worker.exited", f"{what} failed to start: exit code {code}", fields=fields)
            self._give_up(f"worker {worker.index} failed to start (exit code {code}); see its log above")
        else:
            self.log.event(
                "error",
                "worker.exited",
                f"{what} exited unexpectedly with code {code}; restarting it",
                fields=fields,
            )
            now = time.monotonic()
            self._restarts.append(now)
            while self._restarts and self._restarts[0] < now - RESTART_WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) > MAX_RESTARTS:
                self._give_up(f"workers crashed {len(self._restarts)} times within {RESTART_WINDOW_S:g} s; giving up")
            else:
                self._spawn_task(self._spawn(worker.index))
        self._check_done()

    # -------------------------------------------------------------- stopping and signals

    def _give_up(self, message: str) -> None:
        if self.fatal is None:
            self.fatal = message
            self.log.event("error", "workers.failed", message, fields={"workers": self.count})
        self.failed = True
        self._stop(signal.SIGTERM)

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            self._reload()
        else:
            self.log.event(
                "info",
                "server.draining",
                f"{sig.name}: draining {len(self.workers)} workers",
                fields={"workers": len(self.workers), "pid": os.getpid()},
            )
            self._stop(sig)

    def _stop(self, sig: signal.Signals) -> None:
        self.stopping = True
        for worker in list(self.workers.values()):
            self._send(worker, sig)
        self._check_done()

    def _reload(self) -> None:
        self.log.event(
            "info",
            "reload.start",
            f"SIGHUP: forwarded to {len(self.workers)} workers",
            fields={"workers": len(self.workers), "pid": os.getpid()},
        )
        self._check_workers_key()
        for worker in list(self.workers.values()):
            if worker.ready:
                self._send(worker, signal.SIGHUP)
            else:  # still starting: its handlers are not in place yet
                worker.reload_pending = True

    def _check_workers_key(self) -> None:
        """The worker count is fixed for the supervisor's life: say so if the file changed it."""
        if getattr(self.args, "workers", None) is not None or not getattr(self.args, "config", None):
            return
        from engine.config import load_config

        try:
            wanted = load_config(Path(self.args.config)).workers
        except CallbridgeError:
            return  # the workers log the located errors
        if wanted != self.count:
            self.log.event(
                "warning",
                "reload.workers",
                f"workers: {wanted} needs a restart; still running {self.count}",
            )

    def _send(self, worker: _Worker, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.proc.send_signal(sig)


def supervise(args: argparse.Namespace, config: Config, workers: int) -> int:
    """``callbridge serve`` with ``workers`` > 1: run the supervisor until its workers exit."""
    return asyncio.run(Supervisor(args, config, workers).run())
