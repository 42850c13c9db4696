"""Shared fixtures: the shipped specs, compiled once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.language.loader import SpecSet, load_specs

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture(scope="session")
def specs() -> SpecSet:
    return load_specs(ROOT / "specs")
