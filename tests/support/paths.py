"""Where things are in this checkout: the one place a test finds the repository from its own path."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FIXTURES = TESTS / "fixtures"
CRDS = REPO / "crds"
