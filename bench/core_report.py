"""Print the call core's costs and their ratios to a bare orjson parse+dump, measured side by
side in one run (medians of repeated timeit runs; the machine is shared and noisy, so compare
the ratios, not the absolute numbers).

    .venv/bin/python bench/core_report.py
"""

from __future__ import annotations

import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import core_cases


def median_us(fn: Callable[[], object], repeat: int = 9) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return statistics.median(t / number for t in timer.repeat(repeat, number)) * 1e6


def main() -> int:
    spec_set = core_cases.specs()
    floor = median_us(core_cases.bare_parse_dump())
    rows = [("bare orjson.loads + orjson.dumps (floor)", floor, None)]
    media = median_us(core_cases.media_through_core(spec_set, "default_ulaw"))
    rows.append(("media message through the core, pass-through", media, 10.0))
    try:
        transcoded = median_us(core_cases.media_through_core(spec_set, "default"))
        rows.append(("media message through the core, mu-law 8k -> pcm16 24k", transcoded, None))
    except ImportError:
        pass
    setup = median_us(core_cases.call_setup(spec_set), repeat=7)
    clears = sorted(core_cases.bargein_through_core(spec_set))
    clear_p50, clear_p99 = clears[len(clears) // 2] * 1e6, clears[int(len(clears) * 0.99)] * 1e6
    print(f"{'case':<58} {'median µs':>10} {'x floor':>8} {'target':>8}")
    for name, value, target in rows:
        print(f"{name:<58} {value:>10.2f} {value / floor:>8.1f} {f'<= {target:g}x' if target else '':>8}")
    print(f"{'call set-up (session, handshake, start, AI open, release)':<58} {setup:>10.2f} {'':>8} {'<= 100':>8}")
    print(
        f"{'barge-in: AI clear in -> platform clear out (p50; p99 next)':<58} {clear_p50:>10.2f} {clear_p99:>8.1f}"
        f" {'<= 1000':>8}"
    )
    ok = media / floor <= 10.0 and setup <= 100.0
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
