"""A served process moves its startup heap out of the garbage collector's sight, and a spec
reload lets the replaced specs go. Run in a child process: freezing is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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
               "still_frozen": still_frozen, "released": old() is None, "frozen_after": gc.get_freeze_count()}
        await server.drain(0.5)
        print(json.dumps(out))

    asyncio.run(main())
    """
)


def test_a_served_process_freezes_its_warm_heap_and_a_reload_releases_what_was_replaced() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ready"] and out["reloaded"]
    assert out["frozen"] > 20_000  # modules, specs and kernels: all of it was frozen once warm
    assert out["still_frozen"] and out["released"]  # frozen garbage waits for the reload, then goes
    assert out["frozen_after"] > 20_000
