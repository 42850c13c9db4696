"""The report's barge-in verdict: judged on the first placement's p99, stale frames counted in every placement."""

from __future__ import annotations

from typing import Any

from bench.report import targets


def run(p99: float, stale: list[int]) -> dict[str, Any]:
    return {"bargein": {"p99_ms": p99, "stale_frames": stale[0]}, "p99_all": [p99] * len(stale), "stale_all": stale}


def barge_row(own: dict[str, Any], shared: dict[str, Any]) -> str:
    load = {
        "targets": {},
        "bargein": {"callbridge": own, "bare": run(1.6, [0, 0, 0])},
        "bargein_placement": "own",
        "bargein_also": {"shared": {"callbridge": shared}},
    }
    return next(row for row in targets(load) if row.startswith("| barge-in"))


def test_the_server_on_its_own_cpu_is_judged_and_the_shared_figure_shown_beside_it() -> None:
    row = barge_row(run(0.67, [0, 0, 0]), run(1.07, [0, 0, 0]))
    assert "p99 0.67 ms (server on a CPU of its own" in row
    assert "sharing the CPUs: callbridge p99 1.07 ms" in row and "bare 1.60 ms" in row
    assert row.endswith("0 stale in 6 run(s) | met |")


def test_a_stale_frame_in_any_placement_fails_the_target() -> None:
    assert barge_row(run(0.67, [0, 0, 0]), run(1.07, [0, 2, 0])).endswith("2 stale in 6 run(s) | NOT met |")
    assert barge_row(run(1.20, [0, 0, 0]), run(0.90, [0, 0, 0])).endswith("| NOT met |")
