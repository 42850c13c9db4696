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
