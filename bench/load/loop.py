"""Run a load-test process's main coroutine on uvloop when installed (as callbridge does)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, numpy, websockets) out of the collector's sight, as
    ``callbridge serve`` does: a full collection then walks only what the run itself keeps."""
    gc.collect()
    gc.freeze()


class Stamps:
    """``[time, payload bytes]`` per message, kept as two flat lists of numbers: nothing per frame
    for the garbage collector to track (per-frame lists made full collections of 10-30 ms stall
    the harness mid-step)."""

    __slots__ = ("sizes", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.sizes: list[int] = []

    def add(self, time: float, size: int) -> None:
        self.times.append(time)
        self.sizes.append(size)

    def pairs(self) -> list[tuple[float, int]]:
        return list(zip(self.times, self.sizes, strict=True))
