"""pytest-benchmark view of the DSP cases in ``dsp_cases.py``: ``pytest bench --benchmark-enable``.

Cases of one group run next to each other, so ours and the usual choices are timed in the same
run. Read the *mean* column: soxr's streams return nothing on most calls and a burst on a few,
so their median hides most of their cost. For a compact table of amortized per-call times and
ratios, run ``python bench/dsp_report.py``.
"""

from __future__ import annotations

import pytest

from bench.dsp_cases import all_cases

CASES = all_cases()


@pytest.mark.parametrize(("group", "label", "make"), CASES, ids=[f"{group} | {label}" for group, label, _ in CASES])
def test_dsp(benchmark, group, label, make):
    benchmark.group = group
    benchmark.extra_info["label"] = label
    benchmark(make())
