"""The load test: ``python -m bench.load`` (``make bench`` runs it and writes the report).

For each target (callbridge, the bare relay, the straightforward transcoding relay) it starts
the server and a separate AI-peer process, then ramps the number C of concurrent Twilio-format
calls driven from a third process, until the p99 added latency passes 20 ms in either direction
or a frame is lost. Each step measures latency per direction (p50/p95/p99/max), frames lost,
duplicated and late, server CPU seconds per call-second, RSS per call and downlink pacing
jitter. A barge-in scenario (the AI talks in bursts and sends ``clear``) measures the clear's
latency and any stale audio after it. Results go to ``bench/results/load.json``; ``bench/report.py``
turns them into ``bench/results/report.md`` with plots.

Every loop is bounded in time and count, and everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.load import analysis
from engine import native

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
TARGETS = ("callbridge", "bare", "bare-direct", "naive")
QUIET_MS = 600
WORKERS = 1  # callbridge serve --workers (--workers on the command line)
#: the target ``callbridge-baseline``: callbridge served from another checkout (--baseline-tree),
#: e.g. a ``git worktree`` of the previous commit, to compare two builds in one interleaved run
BASELINE = "callbridge-baseline"
BASELINE_TREE: Path | None = None
#: (server CPUs, harness CPUs) when the server under test gets cores of its own (``--pin``)
PINNED: tuple[list[int], list[int]] | None = None
#: the call generator's and AI peer's nice value (``--harness-nice``; 0: the server's priority)
HARNESS_NICE = 0
#: where the barge-in scenario runs. ``own``: the server under test on CPUs of its own, the generator
#: and the AI peer on the rest, as in production, where the platform and the AI are other machines
#: (at equal priority on shared CPUs a server woken by a clear can wait a scheduler slice behind
#: them, which is the harness's doing, not the server's); ``shared``: every process on every CPU
#: at equal priority, as the ramp runs by default. The first one run is the one judged.
PLACEMENTS = ("own", "shared")
#: refinement stops when the bracket around a target's limit is this many calls wide or less
REFINE_RESOLUTION = 10


def plan_cpus(workers: int, pin: bool) -> tuple[list[int], list[int]] | None:
    """Split this process's CPUs: the first ``workers`` for the server under test, the rest for
    the call generator and the AI peer; ``None`` (no pinning) without a CPU left for them."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) <= workers:
        return None
    return cpus[:workers], cpus[workers:]


def placement() -> str:
    """How the processes of a step share the CPUs: ``own`` (the server pinned apart) or ``shared``."""
    return "shared" if PINNED is None else "own"


def _on_cpus(role: str) -> Any:
    """``preexec_fn`` for a child process: bind it (and what it forks) to its role's CPUs, and
    put the harness (generator, AI peer) at ``HARNESS_NICE``.

    In production the platform and the AI provider run on other machines; here they share two
    CPUs with the server under test, and at equal priority a server woken by a message can wait
    a scheduler slice (1-3 ms) behind them: at 50 calls, half of a barge-in's p99. Below the
    server's priority (``--harness-nice 10``) they no longer hold it off a CPU, but the server is
    then woken and switched to for nearly every message, one at a time, which costs every target
    30-40% more CPU per message on this VM and moves the ramp's knee; so the default keeps equal
    priority, and every target gets the same treatment either way. The barge-in scenario, which
    measures latency rather than CPU, runs with the server on a CPU of its own as well
    (:data:`PLACEMENTS`)."""
    cpus = None if PINNED is None else PINNED[0] if role == "server" else PINNED[1]
    nice = HARNESS_NICE if role != "server" else 0
    if cpus is None and not nice:
        return None

    def setup() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if nice:
            os.nice(nice)

    return setup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready_line(proc: subprocess.Popen[str], word: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{word} exited early ({proc.returncode})")
            continue
        if line.startswith(word):
            return int(line.split()[-1])
    raise RuntimeError(f"{word} did not become ready")


def start_ai_peer(mode: str, record: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [PY, "-m", "bench.load.ai_peer", "--mode", mode, "--record", str(record), "--quiet-ms", str(QUIET_MS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_on_cpus("harness"),
    )
    return proc, _ready_line(proc, "ai_peer ready")


def start_target(target: str, ai_port: int, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a server under test; callbridge runs with ``WORKERS`` worker processes."""
    ai_url = f"ws://127.0.0.1:{ai_port}"
    if target in ("callbridge", BASELINE):
        tree = ROOT if target == "callbridge" else BASELINE_TREE
        if tree is None:
            raise SystemExit(f"bench.load: the {BASELINE} target needs --baseline-tree")
        port = free_port()
        config = workdir / f"{target}.yaml"
        config.write_text(
            f"listen: {{host: 127.0.0.1, port: {port}}}\nspecs: {tree / 'specs'}\nlog: {{level: warning}}\n"
            f"limits: {{max_calls: 5000}}\nroutes:\n  - ai: default\n    url: {ai_url}\n"
        )
        proc = subprocess.Popen(
            [PY, "-m", "engine", "serve", "--config", str(config), "--workers", str(WORKERS)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "server.log").open("w"),
            text=True,
            preexec_fn=_on_cpus("server"),
        )
        deadline = time.monotonic() + 60
        ready = f"http://127.0.0.1:{port}/readyz"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=1) as response:
                if response.status == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"callbridge serve exited: see {workdir / 'server.log'}")
            time.sleep(0.2)
        else:
            raise RuntimeError("callbridge serve never became ready")
    else:
        proc = subprocess.Popen(
            [PY, "-m", "bench.load.relays", target, "--ai", ai_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_on_cpus("server"),
        )
        port = _ready_line(proc, "relay ready")
    return proc, f"ws://127.0.0.1:{port}/ws-adapter/twilio/inbound/1/1/+14155550100?caller_id=%2B14155550123"


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def start_generator(
    url: str, calls: int, seconds: float, ramp: float, run_id: str, record: Path
) -> subprocess.Popen[str]:
    args = [
        "--url",
        url,
        "--calls",
        str(calls),
        "--seconds",
        str(seconds),
        "--ramp",
        str(ramp),
        "--run",
        run_id,
        "--record",
        str(record),
    ]
    return subprocess.Popen(
        [PY, "-m", "bench.load.callgen", *args], cwd=ROOT, text=True, preexec_fn=_on_cpus("harness")
    )


def _cpu_seconds(proc: psutil.Process) -> float | None:
    """User + system CPU seconds of ``proc`` and its child processes so far (a server with
    several workers is a tree); None once it has exited."""
    total = 0.0
    try:
        for one in (proc, *proc.children(recursive=True)):
            times = one.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        return None
    return total


#: a Prometheus histogram per label value: ``{generation: {le: cumulative count, "sum": seconds}}``
Histograms = dict[str, dict[str, float]]


def gc_pauses(url: str) -> Histograms | None:
    """callbridge's ``callbridge_gc_pause_seconds`` histogram as ``{generation: {le: count, "sum": s}}``
    (cumulative since the server started), or None for a target without it (the relays)."""
    if not url.startswith("ws://127.0.0.1:"):
        return None
    port = url.split(":")[2].split("/")[0]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    found: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name != "callbridge_gc_pause_seconds":
            continue
        for sample in family.samples:
            generation = found.setdefault(sample.labels["generation"], {})
            if sample.name.endswith("_bucket"):
                generation[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                generation["sum"] = sample.value
    return found or None


def gc_window(before: Histograms | None, after: Histograms | None) -> dict[str, Any] | None:
    """Collections per generation between two :func:`gc_pauses` readings: how many, their total
    seconds, and the bucket bound under which the longest one fell (``max_le_ms``)."""
    if not before or not after:
        return None
    out: dict[str, Any] = {}
    for generation, now in sorted(after.items()):
        then = before.get(generation, {})
        count = now.get("+Inf", 0.0) - then.get("+Inf", 0.0)
        bounds = sorted((float(le), now[le] - then.get(le, 0.0)) for le in now if le not in ("sum", "+Inf"))
        below_all = next((le for le, n in bounds if n >= count), None) if count else None
        out[generation] = {
            "count": int(count),
            "seconds": now.get("sum", 0.0) - then.get("sum", 0.0),
            "max_le_ms": None if below_all is None else below_all * 1000.0,
        }
    return out


def _sched_wait(proc: psutil.Process) -> tuple[float, int] | None:
    """Seconds ``proc`` and its child processes have spent runnable but waiting for a CPU, and how
    many times they were put on one (Linux ``/proc/PID/schedstat`` of each process's main thread,
    the one running its event loop); None where the kernel does not say."""
    waited, runs = 0.0, 0
    try:
        for one in (proc, *proc.children(recursive=True)):
            fields = Path(f"/proc/{one.pid}/schedstat").read_text().split()
            waited += int(fields[1]) / 1e9
            runs += int(fields[2])
    except (OSError, IndexError, ValueError, psutil.Error):
        return None
    return waited, runs


def sched_window(
    before: tuple[float, int] | None, after: tuple[float, int] | None, seconds: float
) -> dict[str, float] | None:
    """The server's wait for a CPU over a window: the share of the window it spent runnable but
    not running, and the mean wait each time it was put on a CPU (a message that wakes it waits
    that long before the server sees it, whatever the server's own code costs)."""
    if before is None or after is None or seconds <= 0:
        return None
    waited, runs = after[0] - before[0], after[1] - before[1]
    return {"share": waited / seconds, "mean_us": waited / runs * 1e6 if runs > 0 else 0.0}


def _p99(values: list[float]) -> float | None:
    return sorted(values)[int(0.99 * (len(values) - 1))] if values else None


def _rss(proc: psutil.Process) -> int:
    """Resident memory of ``proc`` and its child processes, in bytes."""
    total = 0
    for one in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += one.memory_info().rss
    return total


def _cores(before: float | None, after: float | None, seconds: float) -> float | None:
    return None if before is None or after is None else (after - before) / seconds


def run_step(
    target: str,
    server: subprocess.Popen[str],
    ai_peer: subprocess.Popen[str],
    url: str,
    ai_record: Path,
    calls: int,
    seconds: float,
    run_id: str,
    workdir: Path,
    ai_bytes_per_frame: int,
    bargein: bool,
) -> dict[str, Any]:
    """One step: C calls for ``seconds``, with CPU and memory sampled over the steady window.

    The generator's and the AI peer's CPU are sampled over the same window as the server's: they
    share the machine's cores with it, so their load is part of what the step measured."""
    proc = psutil.Process(server.pid)
    peer = psutil.Process(ai_peer.pid)
    rss_idle = _rss(proc)
    record = workdir / f"gen-{run_id}.jsonl"
    ramp = min(2.0, 0.01 * calls + 0.3)
    gen = start_generator(url, calls, seconds, ramp, run_id, record)
    gen_proc = psutil.Process(gen.pid)
    started = time.monotonic()
    warm = ramp + 1.0
    window = max(1.0, seconds - warm - 0.5)
    time.sleep(0.2 + warm)
    gc0 = gc_pauses(url) if target in ("callbridge", BASELINE) else None
    cpu0, gen0, peer0 = _cpu_seconds(proc), _cpu_seconds(gen_proc), _cpu_seconds(peer)
    wait0 = _sched_wait(proc)
    t0 = time.monotonic()
    time.sleep(window / 2)
    rss_peak = _rss(proc)
    time.sleep(window / 2)
    cpu1, gen1, peer1 = _cpu_seconds(proc), _cpu_seconds(gen_proc), _cpu_seconds(peer)
    wait1 = _sched_wait(proc)
    t1 = time.monotonic()
    gc1 = gc_pauses(url) if gc0 is not None else None  # (after t1: the scrape is not in the CPU window)
    gen.wait(timeout=seconds + 60)
    time.sleep(1.0)  # let the AI peer write its per-call lines
    cpu_cores = _cores(cpu0, cpu1, t1 - t0) or 0.0
    gens = {row["call"]: row for row in read_lines(record)}
    ais = {row["call"]: row for row in read_lines(ai_record) if row["call"] in gens}
    up, down = analysis.Direction(), analysis.Direction()
    jitter: list[float] = []
    clear_ms: list[float] = []
    clear_seen_ms: list[float] = []
    stale = 0
    clears_sent = clears_kernel = 0
    # a call the generator never reported (it crashed) or that failed or never reached the AI
    failed = calls - sum(1 for row in gens.values() if not row["error"] and row["call"] in ais)
    lo, hi = started + warm + 0.2, started + seconds - 0.3
    for call, row in gens.items():
        ai = ais.get(call)
        if ai is None:
            continue
        analysis.match(row["sent"], ai["recv"], ai_bytes_per_frame, (lo, hi), up)
        if not bargein:
            ai_sent_frames = _frame_times(ai["sent"], ai_bytes_per_frame)
            analysis.match(ai_sent_frames, row["recv"], 160, (lo, hi), down)
            jitter.extend(analysis.jitter_ms(row["recv"], (lo, hi)))
        else:
            latencies, seen, stale_here = analysis.bargein(row, ai, QUIET_MS / 1000.0)
            clear_ms.extend(latencies)
            clear_seen_ms.extend(seen)
            stale += stale_here
            clears_sent += len(ai["clears"])
            clears_kernel += ai.get("clears_kernel_stamped", 0)
    out: dict[str, Any] = {
        "target": target,
        "kernel_stamps": all(row.get("kernel_stamps", False) for row in gens.values()),
        "calls": calls,
        "seconds": seconds,
        "failed_calls": failed,
        "server_cpu_cores": cpu_cores,
        "cpu_s_per_call_s": cpu_cores / calls,
        "generator_cpu_cores": _cores(gen0, gen1, t1 - t0),
        "ai_peer_cpu_cores": _cores(peer0, peer1, t1 - t0),
        "harness_cpus": len(PINNED[1]) if PINNED else None,  # None: all processes share every CPU
        "placement": placement(),
        "server_cpu_wait": sched_window(wait0, wait1, t1 - t0),
        "rss_idle_mib": rss_idle / 2**20,
        "rss_peak_mib": rss_peak / 2**20,
        "rss_per_call_mib": max(0.0, (rss_peak - rss_idle) / 2**20 / calls),
        "gc": gc_window(gc0, gc1),  # the server's garbage collections over the same window
        "up": {
            **up.percentiles(),
            "lost": up.lost,
            "duplicated": up.duplicated,
            "late": up.late,
            "frames": up.sent_frames,
        },
    }
    if bargein:
        out["bargein"] = {
            "clears": len(clear_ms),
            "stale_frames": stale,
            "p50_ms": statistics.median(clear_ms) if clear_ms else None,
            "p99_ms": _p99(clear_ms),
            "max_ms": max(clear_ms) if clear_ms else None,
            # as the generator's event loop got to it: its own wait for a CPU included
            "seen_p99_ms": _p99(clear_seen_ms),
            # clears timed from the kernel's stamp of their leaving the AI (the rest: just before the write)
            "kernel_sent_share": clears_kernel / clears_sent if clears_sent else None,
        }
    else:
        out["down"] = {
            **down.percentiles(),
            "lost": down.lost,
            "duplicated": down.duplicated,
            "late": down.late,
            "frames": down.sent_frames,
        }
        out["jitter_p99_ms"] = _p99(jitter)
    with contextlib.suppress(OSError):
        record.unlink()
    return out


def _frame_times(sent: list[list[float]], bytes_per_frame: int) -> list[float]:
    """One send time per 20 ms of audio the AI sent (a message may carry several frames)."""
    times: list[float] = []
    carry = 0.0
    for t, size in sent:
        carry += size / bytes_per_frame
        while carry >= 1.0 - 1e-6:
            times.append(t)
            carry -= 1.0
    return times


def within_limit(step: dict[str, Any]) -> bool:
    up_ok = step["up"]["p99"] <= 20.0 and step["up"]["lost"] == 0
    down = step.get("down")
    down_ok = down is None or (down["p99"] <= 20.0 and down["lost"] == 0)
    return bool(up_ok and down_ok and step["failed_calls"] == 0)


def keep_ramping(step: dict[str, Any]) -> bool:
    """Go on past the latency limit (the CPU curve is still worth having, and the naive relay
    never meets it), but not past lost frames, failed calls or a p99 that says it is saturated."""
    down = step.get("down") or {}
    saturated = max(step["up"]["p99"], down.get("p99", 0.0)) > 100.0
    return step["up"]["lost"] == 0 and down.get("lost", 0) == 0 and step["failed_calls"] == 0 and not saturated


def refine_point(steps: list[dict[str, Any]], resolution: int = REFINE_RESOLUTION) -> int | None:
    """The next C to try between a target's largest clean step and the step above it (the
    midpoint, a multiple of 5), or ``None`` when they are within ``resolution`` calls, nothing
    was clean, or nothing above the largest clean step was tried.

    The ramp's grid is coarse where it matters (125 -> 150 is 20%), so 'largest clean C' could be
    off by nearly a whole step; bisecting the bracket makes calls per core a measurement of the
    target rather than of the grid."""
    clean = [s["calls"] for s in steps if within_limit(s)]
    if not clean:
        return None
    low = max(clean)
    above = [s["calls"] for s in steps if s["calls"] > low]
    if not above:
        return None
    high = min(above)
    if high - low <= resolution:
        return None
    middle = 5 * ((low + high) // 10)
    return middle if low < middle < high else None


def _run_interleaved(
    points: dict[str, int], rigs: dict[str, Any], seconds: float, repeats: int, workdir: Path
) -> dict[str, dict[str, Any]]:
    """One step per target (its own C), repeat ``r`` on every target before repeat ``r + 1``;
    returns each target's median run, printed as it goes."""
    runs: dict[str, list[dict[str, Any]]] = {target: [] for target in points}
    for r in range(repeats):
        for target, calls in points.items():
            peer, server, url, record, ai_bytes = rigs[target]
            run_id = f"{calls:04d}{r}"
            step = run_step(target, server, peer, url, record, calls, seconds, run_id, workdir, ai_bytes, False)
            runs[target].append(step)
    medians = {}
    for target, calls in points.items():
        step = medians[target] = median_step(runs[target])
        print(
            f"[{target}] C={calls}: up p99 {step['up']['p99']:.2f} ms, down p99 {step['down']['p99']:.2f} ms, "
            f"lost {step['up']['lost']}/{step['down']['lost']}, cpu {step['server_cpu_cores']:.2f} cores, "
            f"rss/call {step['rss_per_call_mib']:.3f} MiB, generator {_fmt_cores(step['generator_cpu_cores'])} "
            f"/ ai peer {_fmt_cores(step['ai_peer_cpu_cores'])} cores{_fmt_gc(step.get('gc'))}",
            flush=True,
        )
    return medians


def ramp(
    targets: list[str], steps: list[int], seconds: float, repeats: int, workdir: Path, refine: int = 0
) -> dict[str, list[Any]]:
    """Ramp every target, interleaved: at each C, repeat ``r`` runs on each target in turn before
    repeat ``r + 1``. A shared VM has spells, slower and faster, that last minutes; ramping the
    targets one after the other would give each its own spell, while interleaving gives them the
    same one at each step, so their ratios compare like with like. All servers and AI peers stay
    up for the whole ramp (an idle one costs nothing); a target leaves the ramp once it is past
    :func:`keep_ramping`. Then up to ``refine`` rounds bisect each target's bracket around its
    limit (:func:`refine_point`), interleaved the same way."""
    rigs: dict[str, tuple[subprocess.Popen[str], subprocess.Popen[str], str, Path, int]] = {}
    results: dict[str, list[Any]] = {target: [] for target in targets}
    try:
        for target in targets:
            ai_record = workdir / f"ai-{target}.jsonl"
            ai_bytes = 160 if target.startswith("bare") else 960
            ai_proc, ai_port = start_ai_peer("echo", ai_record)
            try:
                server, url = start_target(target, ai_port, workdir)
            except BaseException:
                stop(ai_proc)
                raise
            rigs[target] = (ai_proc, server, url, ai_record, ai_bytes)
            # warm-up: a few calls so JIT, caches and the event loop are warm before measuring
            run_step(target, server, ai_proc, url, ai_record, 5, 3.0, "warm", workdir, ai_bytes, False)
        active = list(targets)
        for calls in steps:
            medians = _run_interleaved({target: calls for target in active}, rigs, seconds, repeats, workdir)
            for target, step in medians.items():
                results[target].append(step)
                if not keep_ramping(step):
                    active.remove(target)
            if not active:
                break
        for _ in range(refine):
            points = {t: c for t in targets if (c := refine_point(results[t])) is not None}
            if not points:
                break
            for target, step in _run_interleaved(points, rigs, seconds, repeats, workdir).items():
                step["refined"] = True
                results[target] = sorted([*results[target], step], key=lambda s: s["calls"])
    finally:
        for ai_proc, server, *_ in rigs.values():
            stop(server)
            stop(ai_proc)
    return results


def _fmt_gc(window: dict[str, Any] | None) -> str:
    if not window:
        return ""
    parts = [
        f"gen{g} {w['count']}x {w['seconds'] * 1000:.0f} ms"
        + (f" (max <{w['max_le_ms']:g} ms)" if w["max_le_ms"] else "")
        for g, w in window.items()
        if w["count"]
    ]
    return ", gc " + "; ".join(parts) if parts else ", gc none"


def _fmt_cores(cores: float | None) -> str:
    return "?" if cores is None else f"{cores:.2f}"


def bargein_scenario(target: str, calls: int, seconds: float, workdir: Path, run_id: str = "barge") -> dict[str, Any]:
    ai_record = workdir / f"ai-agent-{target}-{run_id}.jsonl"
    ai_proc, ai_port = start_ai_peer("agent", ai_record)
    server, url = start_target(target, ai_port, workdir)
    try:
        ai_bytes = 160 if target.startswith("bare") else 960
        step = run_step(target, server, ai_proc, url, ai_record, calls, seconds, run_id, workdir, ai_bytes, True)
    finally:
        stop(server)
        stop(ai_proc)
    print(f"[{target}] barge-in at C={calls} ({placement()} CPUs): {step['bargein']}", flush=True)
    return step


def bargein_runs(
    targets: list[str], calls: int, seconds: float, repeats: int, workdir: Path, placements: Sequence[str] = PLACEMENTS
) -> dict[str, dict[str, Any]]:
    """The barge-in scenario ``repeats`` times per target and placement (:data:`PLACEMENTS`),
    interleaved like the ramp; per placement, the run with the median clear p99 stands for each
    target. ``own`` is left out, with a word on stdout, where no CPU can be spared for the server."""
    global PINNED
    plans: dict[str, tuple[list[int], list[int]] | None] = {}
    for name in placements:
        plan = plan_cpus(WORKERS, pin=True) if name == "own" else None
        if name == "own" and plan is None:
            print(
                f"barge-in: no CPU left for the harness beside {WORKERS} server worker(s); runs shared only", flush=True
            )
            continue
        plans[name] = plan
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {target: [] for target in targets} for name in plans}
    ramp_plan = PINNED
    try:
        for repeat in range(max(1, repeats)):
            for name, plan in plans.items():
                PINNED = plan
                for target in targets:
                    runs[name][target].append(
                        bargein_scenario(target, calls, seconds, workdir, f"barge-{name}{repeat}")
                    )
    finally:
        PINNED = ramp_plan
    return {
        name: {target: median_bargein(steps) for target, steps in by_target.items()} for name, by_target in runs.items()
    }


def median_bargein(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median clear p99, with every run's p99 and stale frames beside it."""
    ordered = sorted(steps, key=lambda step: step["bargein"]["p99_ms"] or 0.0)
    chosen = dict(ordered[len(ordered) // 2])
    chosen["p99_all"] = [step["bargein"]["p99_ms"] for step in steps]
    chosen["stale_all"] = [step["bargein"]["stale_frames"] for step in steps]
    return chosen


def soak(calls: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """callbridge alone at ``calls`` concurrent calls for ``seconds``, calls renewed every 30 s,
    RSS sampled every 5 s: memory must stay flat after the first minute (no growth per call)."""
    ai_record = workdir / "ai-soak.jsonl"
    ai_proc, ai_port = start_ai_peer("echo", ai_record)
    server, url = start_target("callbridge", ai_port, workdir)
    proc = psutil.Process(server.pid)
    samples: list[tuple[float, float]] = []
    begin = time.monotonic()
    gc_before = gc_pauses(url)
    gc_after = None
    try:
        while time.monotonic() - begin < seconds:
            record = workdir / "gen-soak.jsonl"
            gen = start_generator(url, calls, 30, 1.0, "soak", record)
            while gen.poll() is None:
                samples.append((time.monotonic() - begin, _rss(proc) / 2**20))
                time.sleep(5)
            ai_record.write_bytes(b"")  # keep the peer's log from growing without bound
        gc_after = gc_pauses(url)
    finally:
        stop(server)
        stop(ai_proc)
    # The allocator grows for the first minutes under constant call churn; the second half of the
    # run is what says whether memory is flat (a leak grows steadily, call after call).
    half = [rss for t, rss in samples if t >= seconds / 2]
    growth = half[-1] - half[0] if len(half) >= 2 else float("nan")
    calls_in_half = calls * (seconds / 2) / 30
    print(
        f"[soak] {calls} calls for {seconds:.0f} s: RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MiB, "
        f"second half {growth:+.2f} MiB over ~{calls_in_half:.0f} calls{_fmt_gc(gc_window(gc_before, gc_after))}",
        flush=True,
    )
    return {
        "calls": calls,
        "seconds": seconds,
        "samples": samples,
        "growth_mib": growth,
        "calls_in_second_half": calls_in_half,
        "rss_mib": samples[-1][1],
        "gc": gc_window(gc_before, gc_after),  # the server's collections over the whole soak
    }


def median_step(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median up-link p99 stands for the step (its figures stay consistent)."""
    ordered = sorted(runs, key=lambda r: (r["up"]["p99"], r.get("down", {}).get("p99", 0)))
    chosen = dict(ordered[len(ordered) // 2])
    chosen["repeats"] = len(runs)
    chosen["up_p99_all"] = [r["up"]["p99"] for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> int:
    global WORKERS, PINNED, HARNESS_NICE, BASELINE_TREE
    parser = argparse.ArgumentParser(description="callbridge load test against two baselines")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated servers under test, from {', '.join((*TARGETS, BASELINE))}",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help=f"a checkout (e.g. `git worktree add /tmp/base HEAD~1`, built with `make native` there) "
        f"that the {BASELINE} target serves from",
    )
    parser.add_argument("--steps", default="25,50,75,100,125,150,175,200,250,300,400")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--refine",
        type=int,
        default=2,
        help="after the ramp, bisect each target's bracket around its limit this many times (%(default)s)",
    )
    parser.add_argument("--bargein-calls", type=int, default=50)
    parser.add_argument(
        "--bargein-seconds",
        type=float,
        default=20.0,
        help="length of each barge-in run (20 s at 50 calls: about 650 clears, so a p99 is not a run's 3rd worst)",
    )
    parser.add_argument(
        "--bargein-placements",
        default=",".join(PLACEMENTS),
        help="where the barge-in runs go, the first one judged against the target: own (the server on a CPU "
        "of its own, the generator and AI peer on the rest, as when they are other machines) and/or shared "
        "(every process on every CPU at equal priority, as the ramp) (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="short steps, one repeat (a smoke run)")
    parser.add_argument(
        "--soak",
        type=float,
        default=0,
        help="also run callbridge for this many seconds at "
        "--soak-calls calls and check memory stays flat (600 for the 10-minute target)",
    )
    parser.add_argument("--soak-calls", type=int, default=100)
    parser.add_argument("--soak-only", action="store_true", help="skip the ramp; merge into an existing --out")
    parser.add_argument("--out", default=str(RESULTS / "load.json"))
    parser.add_argument(
        "--workers", type=int, default=1, help="run callbridge serve with this many worker processes (one port)"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="give the server under test its own CPU(s) (one per worker) and the generator and AI peer the rest, "
        "when there are enough (default: off: on this VM every message then wakes another CPU, which costs "
        "30-50%% more CPU per message than letting the scheduler keep the processes together)",
    )
    parser.add_argument(
        "--harness-nice",
        type=int,
        default=HARNESS_NICE,
        help="nice value of the call generator and AI peer (they stand for other machines): above 0 they do not "
        "hold the server under test off a CPU, but it is then switched to for nearly every message, 30-40%% more "
        "CPU per message on a small VM (default %(default)s: the server's own priority)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.bargein_placements.split(",")) - set(PLACEMENTS) - {""})
    if unknown:
        parser.error(f"--bargein-placements: unknown {', '.join(unknown)} (choose from {', '.join(PLACEMENTS)})")
    WORKERS = args.workers
    BASELINE_TREE = args.baseline_tree.resolve() if args.baseline_tree else None
    HARNESS_NICE = args.harness_nice
    PINNED = plan_cpus(args.workers, args.pin)
    if args.quick:
        args.steps, args.seconds, args.repeats, args.bargein_calls, args.refine = "10,25,50", 5.0, 1, 10, 0
        args.bargein_seconds = 6.0
    steps = [int(s) for s in args.steps.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.soak_only:
        report_path = Path(args.out)
        existing = json.loads(report_path.read_text()) if report_path.exists() else {}
        with tempfile.TemporaryDirectory(prefix="cb-soak-") as tmp:
            existing["soak"] = soak(args.soak_calls, args.soak or 600, Path(tmp))
        report_path.write_text(json.dumps(existing, indent=1))
        return 0
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "steps": steps,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "workers": args.workers,
        "interleaved": True,
        "refine": args.refine,
        "pinned": {"server": PINNED[0], "harness": PINNED[1]} if PINNED else None,
        "harness_nice": HARNESS_NICE,
        "engine": native.status(),  # the server under test is started from this tree, in this environment
        "targets": {},
        "bargein": {},
    }
    with tempfile.TemporaryDirectory(prefix="cb-load-") as tmp:
        workdir = Path(tmp)
        targets = args.targets.split(",")
        report["targets"] = ramp(targets, steps, args.seconds, args.repeats, workdir, args.refine)
        if args.bargein_calls > 0:
            placements = [p for p in args.bargein_placements.split(",") if p]
            found = bargein_runs(targets, args.bargein_calls, args.bargein_seconds, args.repeats, workdir, placements)
            judged = next(iter(found), None)
            report["bargein"] = found[judged] if judged else {}
            report["bargein_placement"] = judged
            report["bargein_also"] = {name: steps for name, steps in found.items() if name != judged}
        if args.soak:
            report["soak"] = soak(args.soak_calls, args.soak, workdir)
        if "callbridge" in args.targets:
            with contextlib.suppress(Exception):
                report["server_log_tail"] = (workdir / "server.log").read_text()[-2000:]
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
