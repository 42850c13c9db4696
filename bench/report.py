"""Write ``bench/results/report.md`` and its plots from the load test's ``load.json`` and the
kernel/core ratio reports (``make bench`` runs everything, then this).

    python bench/report.py [--load bench/results/load.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LIMIT_MS = 20.0


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        cores, ram = psutil.cpu_count(), f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        cores, ram = "?", "?"
    versions = []
    for package in ("websockets", "uvloop", "numpy", "numba", "orjson", "transitions", "soxr", "opuslib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    return [
        f"- Machine: {cpu}, {cores} cores, {ram} RAM, {platform.platform()}",
        f"- Python {platform.python_version()}; " + ", ".join(versions),
    ]


def within(step: dict[str, Any]) -> bool:
    down = step.get("down") or {}
    return (
        step["up"]["p99"] <= LIMIT_MS
        and down.get("p99", 0) <= LIMIT_MS
        and step["up"]["lost"] == 0
        and down.get("lost", 0) == 0
        and step["failed_calls"] == 0
    )


def calls_per_core(steps: list[dict[str, Any]]) -> tuple[int, float, float]:
    """(largest C within the limit, server cores used there, C per core extrapolated)."""
    ok = [s for s in steps if within(s)]
    if not ok:
        return 0, float("nan"), float("nan")
    best = max(ok, key=lambda s: s["calls"])
    cores = best["server_cpu_cores"]
    return best["calls"], cores, best["calls"] / cores if cores > 0 else float("nan")


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def gc_cell(window: dict[str, Any] | None) -> str:
    """The server's garbage collections over a step's measured window (callbridge's
    ``callbridge_gc_pause_seconds``; the relays do not report theirs)."""
    if not window:
        return "–"
    count = sum(w["count"] for w in window.values())
    if not count:
        return "none"
    paused = sum(w["seconds"] for w in window.values()) * 1000.0
    longest = max((w["max_le_ms"] or 0.0) for w in window.values())
    return f"{count}, {paused:.1f} ms (< {longest:g} ms)"


def wait_cell(wait: dict[str, float] | None) -> str:
    """The server's wait for a CPU over a step (``bench.load.sched_window``)."""
    return "–" if not wait else f"{wait['share']:.1%}, {wait['mean_us']:.0f} us per run"


def load_tables(load: dict[str, Any]) -> list[str]:
    lines = []
    for target, steps in load["targets"].items():
        lines += [
            f"### {target}",
            "",
            "| C | up p50 / p95 / p99 / max ms | down p50 / p95 / p99 / max ms | lost up/down | dup | late up/down "
            "| server cores | CPU s per call-s | RSS MiB/call | jitter p99 ms | generator / AI peer cores "
            "| server GC: collections, ms paused (longest under) | server's wait for a CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in steps:
            up, down = s["up"], s.get("down", {})
            calls = f"{s['calls']}*" if s.get("refined") else str(s["calls"])
            lines.append(
                f"| {calls} | {fmt(up['p50'])} / {fmt(up['p95'])} / {fmt(up['p99'])} / {fmt(up['max'])} "
                f"| {fmt(down.get('p50'))} / {fmt(down.get('p95'))} / {fmt(down.get('p99'))} / {fmt(down.get('max'))} "
                f"| {up['lost']}/{down.get('lost', '–')} | {up['duplicated'] + down.get('duplicated', 0)} "
                f"| {up['late']}/{down.get('late', '–')} | {fmt(s['server_cpu_cores'])} "
                f"| {fmt(s['cpu_s_per_call_s'], 4)} "
                f"| {fmt(s['rss_per_call_mib'], 3)} | {fmt(s.get('jitter_p99_ms'))} "
                f"| {fmt(s.get('generator_cpu_cores'))} / {fmt(s.get('ai_peer_cpu_cores'))} | {gc_cell(s.get('gc'))} "
                f"| {wait_cell(s.get('server_cpu_wait'))} |"
            )
        lines.append("")
    return lines


def plots(load: dict[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib is not installed: no plots)"]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, direction in zip(axes, ("up", "down"), strict=True):
        for target, steps in load["targets"].items():
            calls = [s["calls"] for s in steps if direction in s]
            for pct, style in (("p50", ":"), ("p99", "-")):
                ax.plot(
                    calls,
                    [s[direction][pct] for s in steps if direction in s],
                    style,
                    marker="o",
                    label=f"{target} {pct}",
                )
        ax.axhline(LIMIT_MS, color="grey", lw=0.8)
        ax.set_title(f"latency per frame, {'platform → AI' if direction == 'up' else 'AI → platform'}")
        ax.set_xlabel("concurrent calls")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ms")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "latency.png", dpi=110)
    out.append("![latency percentiles](latency.png)")
    fig, ax = plt.subplots(figsize=(6, 4))
    for target, steps in load["targets"].items():
        ax.plot([s["calls"] for s in steps], [s["cpu_s_per_call_s"] * 1000 for s in steps], marker="o", label=target)
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("server CPU ms per call-second")
    ax.set_title("CPU per call")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "cpu.png", dpi=110)
    out.append("![CPU per call](cpu.png)")
    return out


#: how the barge-in runs shared the CPUs (``bench.load.PLACEMENTS``), in the report's words
PLACEMENT_WORDS = {
    "own": "server on a CPU of its own, generator and AI peer on the other(s)",
    "shared": "all processes sharing every CPU at equal priority",
}


def stale_runs(step: dict[str, Any]) -> list[int]:
    """Stale frames of each barge-in run behind a shown step (one run in an older load.json)."""
    return list(step.get("stale_all", [step["bargein"]["stale_frames"]]))


def bargein_table(runs: dict[str, Any]) -> list[str]:
    lines = [
        "| target | clears | kernel-stamped | clear latency p50 / p99 / max ms | p99 of each run ms "
        "| stale frames (all runs) | p99 as seen ms | server's wait for a CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, step in runs.items():
        b = step["bargein"]
        each = ", ".join(fmt(v) for v in step.get("p99_all", [b["p99_ms"]]))
        stale = sum(stale_runs(step))
        share = b.get("kernel_sent_share")
        lines.append(
            f"| {target} | {b['clears']} | {'-' if share is None else f'{share:.0%}'} "
            f"| {fmt(b['p50_ms'])} / {fmt(b['p99_ms'])} / {fmt(b['max_ms'])} "
            f"| {each} | {stale} | {fmt(b.get('seen_p99_ms'))} | {wait_cell(step.get('server_cpu_wait'))} |"
        )
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(load: dict[str, Any]) -> list[str]:
    rows = ["| target | measured | result |", "|---|---|---|"]
    per_core = {t: calls_per_core(s)[2] for t, s in load["targets"].items()}
    cb = per_core.get("callbridge", float("nan"))
    for base, need in (("bare", 0.7), ("naive", 1.5)):
        if base in per_core and math.isnan(per_core[base]) and not math.isnan(cb):
            worst = min(max(st["up"]["p99"], st.get("down", {}).get("p99", 0)) for st in load["targets"][base])
            rows.append(
                f"| calls per core >= {need} x {base} relay | {base} relay: no load within the limit "
                f"(best p99 {fmt(worst)} ms); callbridge {fmt(cb, 0)} calls/core | met |"
            )
            continue
        if base in per_core:
            ratio = cb / per_core[base] if per_core[base] else float("nan")
            rows.append(f"| calls per core >= {need} x {base} relay | {fmt(ratio)} x | {verdict(ratio >= need)} |")
    if per_core.get("bare-direct"):
        ratio = cb / per_core["bare-direct"]
        rows.append(f"| (reference, no target) calls per core vs the bare relay on callbacks | {fmt(ratio)} x | – |")
    steps = {s["calls"]: s for s in load["targets"].get("callbridge", [])}
    if 100 in steps:
        p99 = max(steps[100]["up"]["p99"], steps[100]["down"]["p99"])
        bare = {s["calls"]: s for s in load["targets"].get("bare", [])}.get(100)
        context = (
            f" (bare relay, same run: up {fmt(bare['up']['p99'])}, down {fmt(bare['down']['p99'])} ms)" if bare else ""
        )
        rows.append(
            f"| added latency p99 at 100 calls <= 5 ms per direction | up {fmt(steps[100]['up']['p99'])}, "
            f"down {fmt(steps[100]['down']['p99'])} ms{context} | {'met' if p99 <= 5 else 'NOT met'} |"
        )
    cb_steps = load["targets"].get("callbridge", [])
    if cb_steps:
        worst = max(s["rss_per_call_mib"] for s in cb_steps)
        rows.append(f"| RSS <= 1 MiB per active call | {fmt(worst, 3)} MiB (worst step) | {verdict(worst <= 1)} |")
    barge = load["bargein"].get("callbridge", {}).get("bargein")
    if barge:
        stale_all = stale_runs(load["bargein"]["callbridge"])
        for runs in load.get("bargein_also", {}).values():  # a stale frame counts in any placement
            if "callbridge" in runs:
                stale_all += stale_runs(runs["callbridge"])
        ok = (barge["p99_ms"] or 99) <= 1.0 and not any(stale_all)
        floors = [
            f"{name} {fmt(step['bargein']['p99_ms'])} ms"
            for name, step in load["bargein"].items()
            if name in ("bare", "bare-direct") and step.get("bargein")
        ]
        context = f"; untouched relays, same run: {', '.join(floors)}" if floors else ""
        shared = load.get("bargein_also", {}).get("shared", {}).get("callbridge")
        if shared:
            context += f"; all processes sharing the CPUs: callbridge p99 {fmt(shared['bargein']['p99_ms'])} ms"
        rows.append(
            f"| barge-in: platform clear within 1 ms p99, zero stale frames | p99 {fmt(barge['p99_ms'])} ms "
            f"({PLACEMENT_WORDS[load.get('bargein_placement') or 'shared']}{context}), "
            f"{sum(stale_all)} stale in {len(stale_all)} run(s) | {'met' if ok else 'NOT met'} |"
        )
    if "soak" in load:
        soak = load["soak"]
        per_call_kib = soak["growth_mib"] * 1024 / max(1.0, soak.get("calls_in_second_half", 1.0))
        rows.append(
            f"| memory flat over {soak['seconds'] / 60:.0f} min | {fmt(soak['growth_mib'])} MiB in the second half "
            f"(~{per_call_kib:.1f} KiB per call, RSS {fmt(soak.get('rss_mib'), 0)} MiB; garbage collections over "
            f"the soak: {gc_cell(soak.get('gc'))}) "
            f"| {verdict(soak['growth_mib'] <= 0.02 * soak.get('rss_mib', 100))} |"
        )
    return rows


def equal_load(load: dict[str, Any]) -> list[str]:
    """Server CPU per call at the same C, and callbridge's ratio to each baseline."""
    by_target = {t: {s["calls"]: s for s in steps} for t, steps in load["targets"].items()}
    cb = by_target.get("callbridge", {})
    common = sorted(set(cb).intersection(*(set(v) for t, v in by_target.items() if t != "callbridge")))
    if not common:
        return []
    others = [t for t in by_target if t != "callbridge"]
    lines = [
        "## CPU at equal load",
        "",
        "Server CPU ms per call-second at the same number of calls (lower is better); a ratio below 1 means "
        "callbridge needs less CPU than that baseline for the same calls.",
        "",
        "| C | callbridge | " + " | ".join(others) + " | " + " | ".join(f"callbridge / {t}" for t in others) + " |",
        "|---" * (2 + 2 * len(others)) + "|",
    ]
    for c in common:
        mine = cb[c]["cpu_s_per_call_s"] * 1000
        theirs = [by_target[t][c]["cpu_s_per_call_s"] * 1000 for t in others]
        ratios = [mine / v if v else float("nan") for v in theirs]
        lines.append(
            f"| {c} | {fmt(mine)} | "
            + " | ".join(fmt(v) for v in theirs)
            + " | "
            + " | ".join(fmt(r) for r in ratios)
            + " |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", default=str(RESULTS / "load.json"))
    args = parser.parse_args(argv)
    path = Path(args.load)
    if not path.exists():
        print(f"report: no {path}; run `python -m bench.load` first", file=sys.stderr)
        return 1
    load = json.loads(path.read_text())
    lines = ["# callbridge performance report", "", f"Run started {load['started']}.", "", *machine(), ""]
    lines += [
        "## How to read this report",
        "",
        "Everything ran on this one machine over loopback, side by side in one run: callbridge, a bare relay that "
        "forwards each message untouched between the two sockets with websockets' asyncio API (`async for` and "
        "`await send`, the way a Python relay is usually written), and a "
        "straightforward transcoding relay written the way peers do it (stdlib json, audioop, soxr HQ streaming "
        "resamplers). As a reference without a target, `bare-direct` is the same untouched relay built like "
        "callbridge's I/O (`engine.io.direct`: each message handled and written from inside the socket's read "
        "callback): the floor of this design, so the distance from it to callbridge is the engine's own work. "
        "The same load generator (one process) drives Twilio-format calls paced at 20 ms from speech "
        "audio, mu-law 8 kHz on the platform side; the AI side is a separate process "
        "speaking the AI Provider protocol at pcm16 "
        "24 kHz that echoes the audio (the bare relay's AI gets Twilio's own messages). Latency is per 20 ms frame of "
        "audio: from the moment the frame left one end until the message carrying it arrived at the other "
        "(one system-wide monotonic clock), so a relay that holds audio back pays for it. A frame counts as sent "
        "just before the sender's write (the relay it wakes may run before the write returns: a stamp taken after "
        "it would hide that). 'Arrived' is when the "
        "data reached the receiving socket (the kernel's receive timestamp, SO_TIMESTAMPNS), not when the harness "
        "process got round to it: on 2 shared cores the generator itself waits 2-4 ms for a CPU at times, and "
        "that wait is the harness's, not the relay's (the barge-in table shows both). A step is clean while p99 "
        "stays within 20 ms in both directions and no frame is lost; the ramp goes on past that (for the CPU "
        "curve) until a frame is lost or p99 passes 100 ms"
        + (
            f", then each target's bracket around its limit (its largest clean C and the step above it) is "
            f"bisected up to {load['refine']} time(s) (steps marked * in the tables), so that calls per core "
            "measures the target rather than the ramp's grid"
            if load.get("refine")
            else ""
        )
        + ". 'Calls per core' divides the largest clean C by the "
        "server CPU it used there (the machine has 2 cores shared by server, generator and AI peer, so this "
        "extrapolates to a dedicated core; the step tables show what the generator and the AI peer used, since "
        "when the three together approach 2 cores, tail latency is set by contention; the column 'server's wait "
        "for a CPU' shows that contention from the server's side, as the Barge-in section explains). "
        "The machine is a shared VM: compare ratios within this run, not "
        "absolute numbers across runs. "
        f"Each step is the median of {load['repeats']} run(s) of {load['seconds']:.0f} s"
        + (
            ", interleaved: at each C every repeat ran on each target in turn, so the VM's slower and faster "
            "spells fell on all targets alike."
            if load.get("interleaved")
            else "."
        ),
        "",
    ]
    nice = load.get("harness_nice")
    if nice:
        lines += [
            f"The generator and the AI peer ran at nice {nice} (`--harness-nice`), below the server under test: they "
            "stand for other machines, and at equal priority a server woken by a message can wait a scheduler slice "
            "(1-3 ms) behind them for a CPU, which measures the harness, not the server; but it is then switched to "
            "for nearly every message, which costs every target more CPU per message. Every target ran alike.",
            "",
        ]
    elif nice == 0:
        lines += ["The generator and the AI peer ran at the server's own priority (`--harness-nice 0`).", ""]
    if load.get("engine"):
        lines += [
            f"callbridge's per-frame modules ran {load['engine']} (`engine/native.py`; `CALLBRIDGE_PURE=1` runs "
            "the same source interpreted).",
            "",
        ]
    pinned = load.get("pinned")
    if pinned:
        lines += [
            f"This run was pinned (`--pin`): the server under test on CPU(s) {pinned['server']}, the generator "
            f"and the AI peer on {pinned['harness']}. A step whose generator and AI peer together use most of "
            "their CPUs measures the harness, not the server.",
            "",
        ]
    for name in ("core_report.txt", "dsp_report.txt"):
        report = RESULTS / name
        if report.exists():
            lines += [
                f"## {'Call core' if name.startswith('core') else 'Audio kernels'} (`bench/{name[:-4]}.py`)",
                "",
                "```",
                report.read_text().rstrip(),
                "```",
                "",
            ]
    lines += ["## Targets", "", *targets(load), ""]
    lines += [
        "## Calls per core at the limit",
        "",
        "| target | largest clean C | server cores there | calls per core |",
        "|---|---|---|---|",
    ]
    for target, steps in load["targets"].items():
        c, cores, per_core = calls_per_core(steps)
        lines.append(f"| {target} | {c} | {fmt(cores)} | {fmt(per_core, 0)} |")
    lines += ["", *equal_load(load)]
    lines += ["", "## Load steps", "", *load_tables(load)]
    lines += [
        "## Barge-in",
        "",
        "The AI talks in 2 s bursts (much faster than real time), then sends `clear` while the "
        "caller still hears the utterance and stays quiet for 600 ms; audio reaching the caller in that window "
        "is stale.",
        "",
        "Clear latency runs from the AI peer's `clear` leaving its socket (the kernel's send timestamp, "
        "SO_TIMESTAMPING; 'kernel-stamped' is the share of clears that got one, the rest count from just before "
        "the write) to the platform's `clear` reaching the generator's socket (the kernel's receive timestamp): "
        "the relay's time, with neither harness process's wait for a CPU in it. "
        "'as seen' is the p99 as the generator's event loop got to it, its own wait for a CPU included. "
        "Each target ran the scenario once per repeat, interleaved; the run with the median p99 is shown, with "
        "every run's p99 and the stale frames of all runs.",
        "",
        "Where the processes ran matters more here than anywhere else. In production the platform and the AI "
        "are other machines; here they share the cores with the server, and at equal priority a server woken "
        "by a clear can wait a scheduler slice (1-3 ms) behind the generator or the AI peer before it runs at "
        "all: that wait is the test rig's, not the server's. So the scenario runs in two placements, interleaved "
        "(`--bargein-placements`): with the server on a CPU of its own and the generator and AI peer on the "
        "rest (judged against the target, as the first), and with every process sharing every CPU at equal "
        "priority, as the ramp runs. 'Server's wait for a CPU' "
        "(from /proc/PID/schedstat over the same window) is the share of the time the server was ready to run "
        "but not running, and its mean wait each time it got a CPU: it shows how much of a placement's tail is "
        "that wait.",
        "",
    ]
    placements = {load.get("bargein_placement") or "shared": load["bargein"], **load.get("bargein_also", {})}
    for name, runs in placements.items():
        if runs:
            words = PLACEMENT_WORDS.get(name, name)
            lines += [f"### {words[0].upper()}{words[1:]}", "", *bargein_table(runs), ""]
    lines += ["", "## Plots", "", *plots(load), ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
