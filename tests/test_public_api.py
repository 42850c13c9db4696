"""``engine`` exports the public API: each name is its home module's object, the error list is
complete, and ``import engine`` loads none of the per-frame modules (they load on first use,
after the native guard)."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest

import engine
from engine import errors, native

HOMES = {
    "load_specs": "engine.language.loader",
    "SpecSet": "engine.language.loader",
    "CallSession": "engine.core.session",
    "CallRoute": "engine.core.session",
    "AITarget": "engine.core.session",
    "Send": "engine.core.commands",
    "OpenLeg": "engine.core.commands",
    "CloseLeg": "engine.core.commands",
    "Notice": "engine.core.commands",
    "Reschedule": "engine.core.commands",
    "Command": "engine.core.commands",
    "ProtocolErrorKind": "engine.errors",
    **{
        name: "engine.errors"
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.CallbridgeError)
    },
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_name_is_its_home_modules_object(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from engine import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(HOMES[name]), name)


def test_all_lists_exactly_the_public_api() -> None:
    assert sorted(engine.__all__) == sorted([*HOMES, "__version__"])
    assert set(engine.__all__) <= set(dir(engine))


def test_every_error_is_a_callbridge_error() -> None:
    raised = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, BaseException)]
    assert all(issubclass(cls, errors.CallbridgeError) for cls in raised)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'CompiledPeer'"):
        getattr(engine, "CompiledPeer")  # noqa: B009 - the name is not there: that is the point


def test_import_engine_loads_no_per_frame_module() -> None:
    probe = "import json, sys, engine; print(json.dumps(sorted(m for m in sys.modules if m.startswith('engine'))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(done.stdout))
    assert loaded == {"engine", "engine.errors", "engine.native"}
    assert not loaded & set(native.MODULES)
