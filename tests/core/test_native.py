"""engine.native: the compiled per-frame modules load only while they match their source.

Each case runs a fresh interpreter on a copy of the ``engine`` package (with whatever
``make native`` built), so the repository's own files are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import native

PROBE = """
import importlib, json
from engine import native
files = {m: importlib.import_module(m).__file__ for m in native.MODULES}
print(json.dumps({"status": native.status(), "active": native.active(), "files": files}))
"""


def probe(root: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != native.PURE_ENV} | {"PYTHONPATH": str(root)} | env
    done = subprocess.run([sys.executable, "-c", PROBE], env=environ, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(native.PACKAGE_DIR, tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def built() -> bool:
    return native.STAMP_FILE.exists() and all(native.compiled_files(m) for m in native.MODULES)


def test_pure_on_request(copy: Path) -> None:
    seen = probe(copy, **{native.PURE_ENV: "1"})
    assert seen["status"] == f"pure Python ({native.PURE_ENV} is set)"
    assert not seen["active"]
    assert all(path.endswith(".py") for path in seen["files"].values())


@pytest.mark.skipif(not built(), reason="no compiled modules here (make native found no C compiler)")
def test_the_compiled_modules_load_while_they_match(copy: Path) -> None:
    seen = probe(copy)
    assert seen["status"].startswith("compiled")
    assert seen["active"]
    assert all(path.endswith(".so") for path in seen["files"].values())


@pytest.mark.skipif(not built(), reason="no compiled modules here (make native found no C compiler)")
def test_an_edited_source_puts_every_module_back_on_source(copy: Path) -> None:
    playout = copy / "engine" / "core" / "playout.py"
    playout.write_text(playout.read_text() + "\n# edited after the build\n")
    seen = probe(copy)
    assert seen["status"] == "pure Python (engine/core/playout.py changed since it was compiled: run `make native`)"
    assert not seen["active"]
    # all of them, not only the edited one: compiled modules call each other directly
    assert all(path.endswith(".py") for path in seen["files"].values())


def test_no_build_is_pure(copy: Path) -> None:
    for path in copy.joinpath("engine").rglob("*.so"):
        path.unlink()
    seen = probe(copy)
    assert seen["status"] == "pure Python (not compiled: run `make native`)"
    assert all(path.endswith(".py") for path in seen["files"].values())


def test_the_stamp_names_every_compiled_module() -> None:
    if not native.STAMP_FILE.exists() or not native.STAMP_FILE.read_text().strip():
        pytest.skip("not built here")
    assert sorted(json.loads(native.STAMP_FILE.read_text())) == sorted(native.MODULES)
