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
    from engine.language.loader import load_specs

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


CYCLES_CHILD = textwrap.dedent(
    """
    import asyncio, collections, gc, json, subprocess, sys, textwrap, uvloop
    from engine.config import DEFAULT
    from engine.io.server import BridgeServer
    from engine.language.loader import load_specs

    CALLS = textwrap.dedent('''
    import asyncio, sys
    from engine.io.callsim import CallSim
    from engine.io.wav import speechlike
    from engine.language.loader import load_specs
    specs = load_specs()
    async def main():
        audio = speechlike(8000, 0.4)
        sims = (CallSim(specs, "twilio", sys.argv[1], audio, 8000, tail_s=0.1).run() for _ in range(int(sys.argv[2])))
        print(all(r.clean for r in await asyncio.gather(*sims)))
    asyncio.run(main())
    ''')

    async def main():
        server = BridgeServer(DEFAULT, load_specs(), freeze=True)  # the AI: the embedded echo
        await server.start("127.0.0.1", 0)
        while not server.ready:
            await asyncio.sleep(0.05)
        url = f"ws://127.0.0.1:{server.port}/ws-adapter/twilio/inbound/1/1/+14155550100"

        async def calls(n):  # from another process: only the server's objects are in this one
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CALLS, url, str(n), stdout=subprocess.PIPE)
            out, _ = await child.communicate()
            return out.decode().strip() == "True"

        warm = await calls(2)
        await asyncio.sleep(0.3)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection would free is kept in gc.garbage instead
        clean = await calls(8)
        await asyncio.sleep(0.5)
        gc.collect()
        kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
        await server.drain(0.5)
        print(json.dumps({"calls_clean": warm and clean, "garbage": dict(kinds)}))

    uvloop.run(main())
    """
)


def test_an_ended_call_leaves_no_reference_cycles_behind_in_the_server() -> None:
    """Eight real calls through a served bridge (uvloop, as ``callbridge serve`` runs): once
    they end, every object they used is freed by reference counting. A cycle would keep them
    until a full collection, which stalls every live call (tens of ms with many calls)."""
    done = subprocess.run([sys.executable, "-c", CYCLES_CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["calls_clean"]
    assert out["garbage"] == {}
