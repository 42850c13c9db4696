"""The ``callbridge`` command line (filled in as the engine grows)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("callbridge: not built yet", file=sys.stderr)
    return 2
