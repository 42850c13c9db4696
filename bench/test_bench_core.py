"""pytest-benchmark suite for the call core (run with ``make bench``).

Targets: a media message through the core costs at most 10x a bare
``orjson.loads`` + ``orjson.dumps`` of the same message; call set-up at most 100 µs.
``python bench/core_report.py`` prints the same cases as ratios measured side by side.
"""

from __future__ import annotations

import pytest

from bench import core_cases

SPECS = core_cases.specs()


@pytest.mark.benchmark(group="core-media")
def test_bare_orjson_parse_dump(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(core_cases.bare_parse_dump())


@pytest.mark.benchmark(group="core-media")
def test_media_message_through_core_passthrough(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(core_cases.media_through_core(SPECS, "default_ulaw"))


@pytest.mark.benchmark(group="core-media")
def test_media_message_through_core_transcoded(benchmark) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("engine.dsp.transcoder")
    benchmark(core_cases.media_through_core(SPECS, "default"))


@pytest.mark.benchmark(group="core-setup")
def test_call_setup(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(core_cases.call_setup(SPECS))
