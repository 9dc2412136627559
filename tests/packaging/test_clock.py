"""The pure layers read no clock through `datetime` either, which the contracts cannot see.

pyproject.toml's `pure-core` contract keeps `time` (and every I/O library) out of the core, the
statistics and the API models; but they use `datetime` for its types, and `datetime.now()` is a
call on it, not an import. So every module of those layers (not a hand-kept list) is read here:
the moment of a decision is always passed in by the caller.
"""

from __future__ import annotations

import ast

import pytest

from tests.support.paths import REPO

PACKAGE = REPO / "operator" / "featurerollout"
PURE_LAYERS = ("core", "stats", "api")
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"}


def clock_reads(source: str) -> list[str]:
    """`x.now()`, `date.today()`, ... called anywhere in the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_READS:
            found.append(f"line {node.lineno}: .{node.func.attr}()")
    return found


@pytest.mark.parametrize("module", sorted(str(p.relative_to(PACKAGE)) for layer in PURE_LAYERS
                                          for p in (PACKAGE / layer).rglob("*.py")))
def test_a_pure_module_reads_no_clock(module: str) -> None:
    assert clock_reads((PACKAGE / module).read_text()) == []


def test_a_clock_read_is_found() -> None:
    assert clock_reads("from datetime import UTC, datetime\nx = datetime.now(UTC)\n") == ["line 2: .now()"]
