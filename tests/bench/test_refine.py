"""The load test's bisection of each target's limit: which C it tries next."""

from __future__ import annotations

from typing import Any

from bench.load.__main__ import refine_point


def step(calls: int, p99: float, lost: int = 0) -> dict[str, Any]:
    figures = {"p99": p99, "lost": lost}
    return {"calls": calls, "up": figures, "down": figures, "failed_calls": 0}


def test_the_midpoint_of_the_bracket_around_the_limit_is_tried_next() -> None:
    assert refine_point([step(100, 2.0), step(125, 9.0), step(150, 24.0), step(175, 21.0)]) == 135
    assert refine_point([step(200, 14.0), step(250, 51.0)]) == 225


def test_the_bracket_is_above_the_largest_clean_step_even_after_a_noisy_failure() -> None:
    # 150 failed, 175 passed: the report's 'largest clean C' is 175, so the bracket is 175..200
    assert refine_point([step(125, 9.0), step(150, 24.0), step(175, 18.0), step(200, 46.0)]) == 185


def test_a_lost_frame_fails_a_step_like_a_late_one() -> None:
    assert refine_point([step(50, 1.0), step(75, 1.0, lost=3)]) == 60


def test_nothing_to_refine() -> None:
    assert refine_point([step(25, 60.0), step(50, 61.0)]) is None  # never clean (the naive relay)
    assert refine_point([step(25, 1.0), step(50, 2.0)]) is None  # never failed: no bracket
    assert refine_point([step(130, 5.0), step(140, 21.0)]) is None  # within the resolution
    assert refine_point([step(135, 5.0), step(145, 21.0)], resolution=5) == 140
