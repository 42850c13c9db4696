"""Time every DSP case with timeit and print median µs and the ratio to the group's baseline.

Usage: ``.venv/bin/python bench/dsp_report.py [substring ...]`` (only groups containing one of the
substrings). The first case of each group is the usual choice (ratio 1.00); a ratio below 1
means faster than it. Medians are over 7 repeats of an auto-ranged loop (~0.1 s each), GC off.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the engine package

from bench.dsp_cases import all_cases


def median_us(function) -> float:
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    number = max(1, number // 2)  # autorange reaches 0.2 s; ~0.1 s per repeat is enough
    return statistics.median(timer.repeat(repeat=7, number=number)) / number * 1e6


def main(filters: list[str]) -> None:
    baseline: dict[str, float] = {}
    current = None
    for group, label, make in all_cases():
        if filters and not any(f in group for f in filters):
            continue
        if group != current:
            print(f"\n{group}\n{'-' * len(group)}")
            current = group
        us = median_us(make())
        base = baseline.setdefault(group, us)
        print(f"  {label:<42} {us:>12.2f} µs   ×{us / base:5.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
