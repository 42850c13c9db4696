"""A served process moves its startup heap out of the garbage collector's sight, a spec reload
lets the replaced specs go, and its collections are reported on /metrics. Run in a child
process: freezing and the collector's callbacks are process-wide."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, gc, json, weakref
    from engine.config import DEFAULT
    from engine.io.server import BridgeServer
    from engine.spec.loader import load_specs

    class Node:  # stands for the replaced specs: reference cycles, freed only by the collector
        pass

    async def main():
        node = Node()
        node.me = node
        server = BridgeServer(DEFAULT, load_specs(), freeze=True)
        await server.start("127.0.0.1", 0)
        for _ in range(600):
            if server.ready:
                break
            await asyncio.sleep(0.05)
        frozen = gc.get_freeze_count()
        old = weakref.ref(node)
        del node  # cyclic garbage, frozen: no collection sees it until a reload thaws it
        gc.collect()
        still_frozen = old() is not None
        reloaded = await server.reload(None)
        gc.collect()
        out = {"ready": server.ready, "frozen": frozen, "reloaded": reloaded,
               "still_frozen": still_frozen, "released": old() is None, "frozen_after": gc.get_freeze_count(),
               "metrics": server.metrics.render().decode()}
        watching = server.metrics.gc_pauses in gc.callbacks
        await server.drain(0.5)
        out["watching_while_served"], out["watching_after_close"] = watching, server.metrics.gc_pauses in gc.callbacks
        print(json.dumps(out))

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_a_served_process_freezes_its_warm_heap_and_a_reload_releases_what_was_replaced(served: dict[str, Any]) -> None:
    out = served
    assert out["ready"] and out["reloaded"]
    assert out["frozen"] > 20_000  # modules, specs and kernels: all of it was frozen once warm
    assert out["still_frozen"] and out["released"]  # frozen garbage waits for the reload, then goes
    assert out["frozen_after"] > 20_000


def test_every_collection_is_timed_on_metrics_by_generation_while_served(served: dict[str, Any]) -> None:
    text = served["metrics"]
    found = re.findall(r'^callbridge_gc_pause_seconds_count\{generation="(\d)"\} (\S+)$', text, re.M)
    counts = {generation: float(n) for generation, n in found}
    assert set(counts) == {"0", "1", "2"}
    assert counts["2"] >= 3  # the freeze's, the reload's and the child's own full collections at least
    total = re.search(r'^callbridge_gc_pause_seconds_sum\{generation="2"\} (\S+)$', text, re.M)
    assert total is not None and 0 < float(total.group(1)) < 60
    assert served["watching_while_served"] and not served["watching_after_close"]
