"""``python -m bench.load --pin``: the server under test gets CPUs of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.load import __main__ as load

CPUS = sorted(os.sched_getaffinity(0))


def test_no_pinning_unless_asked_and_possible() -> None:
    assert load.plan_cpus(1, pin=False) is None
    assert load.plan_cpus(len(CPUS), pin=True) is None  # no CPU would be left for the generator


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs")
def test_the_server_and_the_harness_run_on_separate_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = load.plan_cpus(1, pin=True)
    assert plan == (CPUS[:1], CPUS[1:])
    monkeypatch.setattr(load, "PINNED", plan)
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    for role, expected in (("server", CPUS[:1]), ("harness", CPUS[1:])):
        done = subprocess.run(show, capture_output=True, text=True, preexec_fn=load._on_cpus(role), check=True)
        assert done.stdout.strip() == str(expected)
