"""The load harness end to end, small: a real callbridge server, the AI peer and the call
generator as separate processes on loopback, a few calls for a few seconds.

What it checks is the harness's own bookkeeping (every frame matched in both directions, no call
failed, a barge-in's clear seen on both sides and nothing stale after it), not performance.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.load import __main__ as load

CALLS = 3
SECONDS = 4.0


def test_an_echo_step_matches_every_frame_both_ways(tmp_path: Path) -> None:
    ai_record = tmp_path / "ai.jsonl"
    ai_proc, ai_port = load.start_ai_peer("echo", ai_record)
    server, url = load.start_target("callbridge", ai_port, tmp_path)
    try:
        step = load.run_step("callbridge", server, ai_proc, url, ai_record, CALLS, SECONDS, "t1", tmp_path, 960, False)
    finally:
        load.stop(server)
        load.stop(ai_proc)
    assert step["failed_calls"] == 0
    # the analysis window starts after the ramp and warm-up and ends before the last frames
    for direction in ("up", "down"):
        figures = step[direction]
        assert figures["frames"] >= CALLS * 50, (direction, figures)
        assert figures["lost"] == 0 and figures["duplicated"] == 0, (direction, figures)
        assert 0.0 < figures["p50"] <= figures["p99"] <= figures["max"] < 1000.0, (direction, figures)
    assert step["server_cpu_cores"] > 0.0
    assert step["kernel_stamps"]  # arrivals are the kernel's receive times (Linux)
    assert step["jitter_p99_ms"] is not None and math.isfinite(step["jitter_p99_ms"])
    # the server's own collections over the window, read from its /metrics before and after
    assert set(step["gc"]) == {"0", "1", "2"}
    assert all(g["count"] >= 0 and g["seconds"] >= 0.0 for g in step["gc"].values())
    assert load.within_limit(step) == (step["up"]["p99"] <= 20.0 and step["down"]["p99"] <= 20.0)
    assert step["placement"] == "shared" and step["server_cpu_wait"] is not None


def test_a_barge_in_clears_the_caller_with_nothing_stale_in_each_placement(tmp_path: Path) -> None:
    found = load.bargein_runs(["callbridge"], CALLS, 6.0, 1, tmp_path)
    # the server on a CPU of its own needs one left for the harness; sharing always works
    assert list(found) == (["own", "shared"] if load.plan_cpus(1, pin=True) else ["shared"])
    assert load.PINNED is None  # the ramp's placement (none) is back
    for name, runs in found.items():
        step = runs["callbridge"]
        barge = step["bargein"]
        assert step["placement"] == name
        assert step["failed_calls"] == 0
        assert barge["clears"] >= CALLS  # each call's agent interrupts itself at least once in 6 s
        assert barge["stale_frames"] == 0 and step["stale_all"] == [0]
        assert 0.0 < barge["p50_ms"] <= barge["max_ms"] < 1000.0
        # the server's wait for a CPU over the window, from the kernel's scheduler statistics
        wait = step["server_cpu_wait"]
        assert wait is not None and 0.0 <= wait["share"] < 1.0 and wait["mean_us"] >= 0.0


def test_a_window_of_scheduler_statistics() -> None:
    assert load.sched_window((1.0, 100), (1.5, 1100), 10.0) == {"share": 0.05, "mean_us": 500.0}
    assert load.sched_window((1.0, 100), (1.0, 100), 10.0) == {"share": 0.0, "mean_us": 0.0}
    assert load.sched_window(None, (1.0, 100), 10.0) is None
