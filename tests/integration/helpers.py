"""Real sockets on 127.0.0.1, ephemeral ports: a bridge server, a recording AI provider, callers.

``RecordingAI`` is an AI Provider protocol AI provider for tests: it records every message it receives (and
the close code), and follows a small script (``Script``): audio to send after ``start``, marks,
a clear, hanging up or dropping the connection after N media frames, or echoing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from engine.config import AIFailurePolicy, Config, Limits, Route, Target
from engine.io.logs import JsonLog
from engine.io.server import BridgeServer
from engine.language.loader import SpecSet

ROOT = Path(__file__).resolve().parents[2]
TWILIO_CALL = ROOT / "tests" / "vectors" / "twilio" / "call.jsonl"
T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run an async test body on a fresh loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def pcm16_frames(samples: np.ndarray, rate: int, ms: int = 20) -> list[bytes]:
    step = rate * ms // 1000
    data = np.asarray(samples, dtype="<i2")
    return [data[i : i + step].tobytes() for i in range(0, len(data) - step + 1, step)]


def decode_pcm16(payloads: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(payloads), dtype="<i2")


@dataclass
class Script:
    """What a RecordingAI does on each call."""

    audio: list[bytes] = field(default_factory=list)  # pcm16 24 kHz frames sent after start
    burst: bool = False  # all at once (faster than real time) instead of paced
    marks_after: dict[int, str] = field(default_factory=dict)  # frame index -> mark name
    clear_after_s: float | None = None  # send a clear this long after start
    hangup_after_media: int | None = None  # send hangup after this many media frames received
    drop_after_media: int | None = None  # close abruptly (1011) after this many media frames
    echo: bool = False


@dataclass
class AICall:
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == name]

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(m["media"]["payload"]) for m in self.events("media"))


class RecordingAI:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.calls: list[AICall] = []
        self.server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> RecordingAI:
        self.server = await serve(self._handler, "127.0.0.1", 0, compression=None)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ai"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handler(self, ws: ServerConnection) -> None:
        call = AICall(path=ws.request.path if ws.request else "",
                      headers=dict(ws.request.headers.raw_items()) if ws.request else {})
        self.calls.append(call)
        script = self.script
        sender: asyncio.Task[None] | None = None
        media = 0
        try:
            async for raw in ws:
                message = orjson.loads(raw)
                call.messages.append(message)
                event = message.get("event")
                if event == "start" and sender is None:
                    sender = asyncio.get_running_loop().create_task(self._send_script(ws))
                elif event == "media":
                    media += 1
                    if script.echo:
                        await ws.send(raw)
                    if script.hangup_after_media == media:
                        await ws.send(orjson.dumps({"event": "hangup", "hangup": {"reason": "NORMAL_CLEARING"}}),
                                      text=True)
                    if script.drop_after_media == media:
                        await ws.close(1011, "AI crashed")
                        break
                elif event == "hangup":
                    await ws.close(1000, "bye")
                    break
        except ConnectionClosed:
            pass
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(BaseException):
                    await sender
            rcvd = ws.protocol.close_rcvd
            call.close_code = rcvd.code if rcvd is not None else None

    async def _send_script(self, ws: ServerConnection) -> None:
        script = self.script
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        cleared = False
        try:
            for index, frame in enumerate(script.audio):
                if not script.burst:
                    await asyncio.sleep(max(0.0, t0 + index * 0.02 - loop.time()))
                message = {"event": "media", "media": {"payload": base64.b64encode(frame).decode()}}
                await ws.send(orjson.dumps(message), text=True)
                if index in script.marks_after:
                    await ws.send(orjson.dumps({"event": "mark", "mark": {"name": script.marks_after[index]}}),
                                  text=True)
            if script.clear_after_s is not None and not cleared:
                await asyncio.sleep(max(0.0, t0 + script.clear_after_s - loop.time()))
                await ws.send(orjson.dumps({"event": "clear"}), text=True)
        except ConnectionClosed:
            pass


def config_for(ai_url: str | None = None, *, retries: int = 1, ai: str = "default", **limits: Any) -> Config:
    routes: tuple[Route, ...] = ()
    if ai_url is not None:
        routes = (Route(None, None, Target(ai, ai_url, {"Authorization": "Bearer test-secret"},
                                           account_id="acc_test", default_region="IN")),)
    return Config(routes=routes, limits=Limits(**limits),
                  ai_failure=AIFailurePolicy(retries=retries, backoff_s=0.01, backoff_max_s=0.02))


@contextlib.asynccontextmanager
async def bridge_server(specs: SpecSet, config: Config, log_lines: list[str] | None = None) -> Any:
    stream = _ListStream(log_lines) if log_lines is not None else None
    server = BridgeServer(config, specs, log=JsonLog(stream, level="debug"))  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.drain(0.5)


class _ListStream:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


def call_url(server: BridgeServer, provider: str = "twilio", *, number: str = "+14155550100",
             caller: str = "919701966915", agent: int = 1, outlet: int = 1) -> str:
    return (f"ws://127.0.0.1:{server.port}/ws-adapter/{provider}/inbound/{agent}/{outlet}/{number}"
            f"?caller_id={caller}")


class ServeProcess:
    """``callbridge [--specs ROOT] serve --config CONFIG`` in its own process; its JSON log lines,
    read as they come. ``hint`` heads the message of a :meth:`wait_for` that finds nothing."""

    def __init__(self, config: Path, specs: Path | None = None, hint: str = "") -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        chosen = ["--specs", str(specs)] if specs is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", *chosen, "serve", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.hint = hint
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, code: str, timeout: float = 30.0) -> dict[str, Any]:
        """The next log line with this ``code`` (the lines before it are kept in ``seen``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            self.seen.append(event)
            if event.get("code") == code:
                return event
        head = f"{self.hint}\n" if self.hint else ""
        raise AssertionError(f"{head}no {code} in the server log; saw {[e.get('code') for e in self.seen]}")

    def problems(self) -> list[str]:
        """Warnings and errors the server logged so far (violations, failed setups)."""
        return [f"{e.get('code')}: {e.get('message')}" for e in self.seen if e.get("level") in ("warning", "error")]
