"""Compile callbridge's per-frame modules with mypyc, in place (``make native``).

Writes a ``.so`` next to each module of :data:`engine.native.MODULES`, mypyc's shared runtime
as ``engine/_native__mypyc.*.so``, and ``engine/_native.json`` with the hash of every source
it compiled (``engine.native`` loads the compiled modules only while those hashes match).
Without a C compiler, or if mypyc fails, it says so and leaves the pure-Python modules in
charge (exit status 0: the server and the tests run either way, only slower).

    python scripts/build_native.py           # build (or rebuild)
    python scripts/build_native.py --clean   # remove every compiled file
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["CALLBRIDGE_PURE"] = "1"  # this process imports engine.native only, never the .so it replaces

from engine import native  # noqa: E402


def clean() -> None:
    native.STAMP_FILE.unlink(missing_ok=True)
    for module in native.MODULES:
        for path in native.compiled_files(module):
            path.unlink()
    for path in native.PACKAGE_DIR.glob("_native__mypyc.*.so"):
        path.unlink()


def compiler() -> str | None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import Distribution

    paths = [str(native.source_path(m).relative_to(ROOT)) for m in native.MODULES]
    os.chdir(ROOT)  # mypy reads [tool.mypy] from pyproject.toml; the .so files land under engine/
    with tempfile.TemporaryDirectory(prefix="callbridge-native-") as tmp:
        extensions = mypycify(paths, group_name=native.GROUP, target_dir=os.path.join(tmp, "c"))
        # A bare Distribution: setup() would also read pyproject.toml's [project] table, which
        # is hatchling's business, not this build's.
        dist = Distribution({"name": "callbridge-native", "ext_modules": extensions})
        dist.script_args = ["-q", "build_ext", "--inplace", "--build-temp", os.path.join(tmp, "o")]
        dist.parse_command_line()
        dist.run_commands()
    stamp = {module: native.digest(module) for module in native.MODULES}
    native.STAMP_FILE.write_text(json.dumps(stamp, indent=1) + "\n")


def main() -> int:
    clean()
    if "--clean" in sys.argv[1:]:
        return 0
    if compiler() is None:
        print("callbridge: no C compiler found: the per-frame modules stay pure Python (about 30% more "
              "CPU per call); install gcc and run `make native`", file=sys.stderr)
        return 0
    try:
        build()
    except BaseException as exc:  # SystemExit from distutils included: never block make test/serve
        clean()
        print(f"callbridge: compiling the per-frame modules failed ({type(exc).__name__}: {exc}); they stay "
              "pure Python (about 30% more CPU per call)", file=sys.stderr)
        return 0
    print(f"callbridge: compiled {len(native.MODULES)} per-frame modules with mypyc")
    return 0


if __name__ == "__main__":
    sys.exit(main())
