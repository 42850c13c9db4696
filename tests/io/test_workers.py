"""`callbridge serve --workers N`: real processes on loopback, no mocks.

One supervisor with two workers on one port (``--port 0``) takes concurrent calls through the
embedded echo AI; the calls are spread over both workers; ``/metrics`` adds up every worker
whichever one is scraped (live frames folded within a second, a killed worker's live call
dropped from the gauge, its counters kept); a killed worker is restarted; SIGHUP reaches every
worker; SIGTERM drains them and the supervisor exits 0. Then: workers that keep crashing make
the supervisor give up with a clear error; the ``workers`` key and flag are checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.cli import build_parser, main
from engine.config import load_config
from engine.errors import SpecErrors
from engine.io.callsim import CallReport, CallSim
from engine.io.metrics import Metrics
from engine.io.wav import speechlike
from engine.language.loader import SpecSet

ROOT = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


class Supervised:
    """``callbridge serve`` as a subprocess; its JSON log lines collected as they come."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.events: list[Event] = []
        self.other: list[str] = []
        self._changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                try:
                    self.events.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    self.other.append(line)
                self._changed.notify_all()

    def wait_for(self, match: Callable[[Event], bool], what: str, timeout: float = 20.0) -> Event:
        """The first logged event (from the start) that ``match`` accepts."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                left = end - time.monotonic()
                if left <= 0:
                    codes = [(e.get("code"), e.get("worker")) for e in self.events]
                    raise AssertionError(f"no {what} in the log; saw {codes} {self.other}")
                self._changed.wait(left)

    def logged(self, code: str) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e.get("code") == code]

    def exit_code(self, timeout: float) -> int:
        """Wait for the process to exit and its log to be read to the end."""
        code = self.proc.wait(timeout=timeout)
        self.reader.join(5)
        return code

    def stop(self) -> None:
        """After a failure: drain the workers through the supervisor, then kill whatever is left."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # its workers notice within a second and drain
                self.proc.wait()


def scrape(port: int) -> dict[str, float]:
    """One /metrics scrape (a new connection: whichever worker the kernel picks)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


COMPLETED = 'callbridge_calls_total{outcome="completed",provider="twilio"}'
ACTIVE = "callbridge_active_calls"
TEL_IN = 'callbridge_frames_total{direction="in",leg="telephony"}'


@pytest.mark.skipif(  # as tests/integration/test_every_platform.py: JIT-off runs check results, not speed
    os.environ.get("NUMBA_DISABLE_JIT") == "1",
    reason="real-time concurrent calls need the compiled kernels",
)
def test_two_workers_share_a_port_metrics_signals_and_restarts(tmp_path: Path, specs: SpecSet) -> None:
    config = tmp_path / "callbridge.yaml"
    # workers: 3 in the file, --workers 2 on the command line: the flag wins
    config.write_text("workers: 3\nlisten: {host: 127.0.0.1, port: 8765}\nlimits: {drain_timeout_ms: 3000}\n")
    server = Supervised("--config", str(config), "--workers", "2", "--port", "0")
    try:
        listening = server.wait_for(lambda e: e.get("code") == "server.listening", "server.listening")
        assert "worker" not in listening and listening["workers"] == 2
        port = int(listening["port"])
        assert port != 8765
        metrics_dir = Path(str(listening["metrics_dir"]))
        assert metrics_dir.is_dir()
        started = server.logged("worker.started")
        assert sorted(e["worker_index"] for e in started) == [0, 1]
        pids = {e["worker_index"]: e["worker_pid"] for e in started}
        assert {e["pid"] for e in server.logged("worker.listening")} == set(pids.values())

        def url(agent: int) -> str:
            return f"ws://127.0.0.1:{port}/ws-adapter/twilio/inbound/{agent}/1/+14155550100?caller_id=+14155550123"

        def sim(agent: int, seconds: float) -> CallSim:
            return CallSim(specs, "twilio", url(agent), speechlike(8000, seconds), 8000, tail_s=0.3)

        def ended(n: int) -> None:
            server.wait_for(lambda e: len(server.logged("call.ended")) >= n, f"{n} call.ended lines")

        async def calls(n: int) -> list[CallReport]:
            return list(await asyncio.gather(*(sim(1, 0.5).run() for _ in range(n))))

        async def phase_a() -> tuple[list[CallReport], CallReport]:
            # six short calls and a long one (agent 7), all at once
            long = asyncio.get_running_loop().create_task(sim(7, 2.5).run())
            short = await calls(6)
            await asyncio.to_thread(ended, 6)
            # whichever worker answers, it counts every worker's calls; the live call is active
            for _ in range(50):
                first = await asyncio.to_thread(scrape, port)
                if first.get(COMPLETED) == 6:
                    break
                await asyncio.sleep(0.05)
            assert first[COMPLETED] == 6 and first[ACTIVE] == 1, first
            await asyncio.sleep(1.2)  # > one fold interval: the live call's frames so far show
            second = await asyncio.to_thread(scrape, port)
            assert second[COMPLETED] == 6 and second[ACTIVE] == 1, second
            assert second[TEL_IN] > first[TEL_IN], (first[TEL_IN], second[TEL_IN])
            # the worker that has the long call is killed under it, and comes back
            accepted = server.wait_for(
                lambda e: e.get("code") == "call.accepted" and "agent 7 " in str(e["message"]), "the long call"
            )
            os.kill(int(accepted["pid"]), signal.SIGKILL)
            return short, await long

        short, long = asyncio.run(asyncio.wait_for(phase_a(), 30))
        for report in short:
            assert report.clean and report.frames_received > 0 and len(report.received) > 2000, report.summary()
        assert not long.clean  # its worker died mid-call
        (accepted,) = [e for e in server.logged("call.accepted") if "agent 7 " in str(e["message"])]
        killed = int(accepted["worker"])
        exited = server.wait_for(lambda e: e.get("code") == "worker.exited", "worker.exited")
        assert exited["level"] == "error" and exited["worker_pid"] == pids[killed]
        assert exited["exit_code"] == -signal.SIGKILL
        restarted = server.wait_for(
            lambda e: e.get("code") == "worker.started" and e["worker_pid"] not in pids.values(), "a restart"
        )
        assert restarted["worker_index"] == killed
        pids[killed] = restarted["worker_pid"]
        server.wait_for(lambda e: e.get("code") == "worker.listening" and e["pid"] == pids[killed], "the restart")

        # more calls until both worker indexes have taken some (the kernel spreads by hash)
        made = 6
        for _ in range(5):
            reports = asyncio.run(asyncio.wait_for(calls(6), 30))
            assert all(r.clean and r.frames_received > 0 for r in reports), [r.summary() for r in reports]
            made += 6
            ended(made)  # (the long call never ended: its worker died)
            workers = {e["worker"] for e in server.logged("call.accepted")}
            if workers == {0, 1}:
                break
        assert workers == {0, 1}
        for _ in range(4):  # the dead worker's calls still count; its live call does not
            samples = scrape(port)
            assert samples[COMPLETED] == made and samples[ACTIVE] == 0, samples
        # frames: every ended call's exactly once, plus what was folded of the killed call, which
        # counts every message it sent: connected, start, media, mark answers, maybe stop
        ended_in = sum(e["stats"]["telephony_in"] for e in server.logged("call.ended"))
        sent_by_long = 3 + long.frames_sent + long.marks_answered
        assert 0 < samples[TEL_IN] - ended_in <= sent_by_long, (samples[TEL_IN], ended_in, sent_by_long)
        assert all("pid" in e and "worker" in e for e in server.logged("call.ended"))

        # SIGHUP: every worker reloads; SIGTERM: every worker drains, the supervisor exits 0
        server.proc.send_signal(signal.SIGHUP)
        for index in (0, 1):
            server.wait_for(
                lambda e, i=index: e.get("code") == "reload.done" and e["pid"] == pids[i],
                f"reload.done from worker {index}",
            )
        server.proc.send_signal(signal.SIGTERM)
        assert server.exit_code(15) == 0
        exits = [e for e in server.logged("worker.exited") if e["worker_pid"] in pids.values()]
        assert sorted(e["worker_index"] for e in exits) == [0, 1] and all(e["exit_code"] == 0 for e in exits)
        stopped = [e for e in server.logged("server.stopped") if "worker" not in e]
        assert len(stopped) == 1 and stopped[0]["level"] == "info"
        assert not metrics_dir.exists()
        assert not server.other, server.other
    finally:
        server.stop()


def test_workers_that_keep_crashing_make_the_supervisor_give_up(tmp_path: Path) -> None:
    server = Supervised("--workers", "2", "--host", "127.0.0.1", "--port", "0")
    try:
        server.wait_for(lambda e: e.get("code") == "server.listening", "server.listening")
        killed: set[int] = set()
        for n in range(6):
            worker = server.wait_for(
                lambda e: (
                    e.get("code") == "worker.started" and e["worker_index"] == 0 and e["worker_pid"] not in killed
                ),
                f"worker 0 started ({n + 1})",
            )
            killed.add(worker["worker_pid"])
            os.kill(worker["worker_pid"], signal.SIGKILL)
        assert server.exit_code(15) == 1
        failed = server.wait_for(lambda e: e.get("code") == "workers.failed", "workers.failed")
        assert "crashed 6 times within 60 s; giving up" in str(failed["message"])
        other = server.wait_for(lambda e: e.get("code") == "worker.exited" and e["worker_index"] == 1, "worker 1")
        assert other["exit_code"] == 0  # drained, not killed
        assert any(line.startswith("callbridge serve: workers crashed 6 times") for line in server.other)
    finally:
        server.stop()


class _Leg:
    def __init__(self) -> None:
        self.frames_in = self.frames_out = 0


class _Session:  # the two frame counts per leg that metrics read from a CallSession
    def __init__(self) -> None:
        self.tel, self.ai = _Leg(), _Leg()


def test_frame_counter_folds_live_calls_once() -> None:
    """The multiprocess frame counter's arithmetic (here on an in-process registry)."""
    live: list[_Session] = []
    metrics = Metrics(lambda: live, multiprocess=True)

    def frames(direction: str, leg: str = "telephony") -> float | None:
        return metrics.registry.get_sample_value("callbridge_frames_total", {"leg": leg, "direction": direction})

    a, b = _Session(), _Session()
    live += [a, b]
    a.tel.frames_in, b.tel.frames_in, b.ai.frames_out = 10, 5, 7
    assert frames("in") == 0  # nothing until a fold or a call's end
    metrics.fold()
    assert frames("in") == 15 and frames("out", "ai") == 7
    metrics.fold()  # nothing new: nothing added
    assert frames("in") == 15
    a.tel.frames_in = 25
    live.remove(a)
    metrics.frames.call_ended(a)  # the rest of a, once
    assert frames("in") == 30
    b.tel.frames_in = 6
    metrics.fold()
    live.remove(b)
    metrics.frames.call_ended(b)
    assert frames("in") == 31 and frames("out", "ai") == 7
    c = _Session()
    c.tel.frames_out = 4
    metrics.frames.call_ended(c)  # a call that ended between folds
    assert frames("out") == 4


def test_the_workers_key_is_checked_and_located(tmp_path: Path) -> None:
    path = tmp_path / "callbridge.yaml"
    path.write_text("listen: {port: 0}\nworkers: 0\n")
    with pytest.raises(SpecErrors) as info:
        load_config(path)
    assert re.search(r"callbridge\.yaml:2:\d+: \$\.workers", str(info.value)), str(info.value)
    path.write_text("workers: four\n")
    with pytest.raises(SpecErrors, match=r"\$\.workers"):
        load_config(path)
    path.write_text("workers: 4\n")
    assert load_config(path).workers == 4
    path.write_text("listen: {port: 0}\n")
    assert load_config(path).workers == 1


def test_the_workers_flag(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).workers is None  # then the config's, else 1
    assert parser.parse_args(["serve", "--workers", "3"]).workers == 3
    for bad in ("0", "257", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--workers", bad])
    assert "--workers" in capsys.readouterr().err
    # --worker-index is the supervisor's business: by hand it is refused, in one line
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert main(["serve", "--worker-index", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("callbridge serve: --worker-index is set by `callbridge serve --workers N`"), err
