"""The engine and its conditions are pure: they import nothing that does I/O or reads a clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "featurerollout"
FORBIDDEN = {"kopf", "kubernetes", "httpx", "prometheus_api_client", "aiohttp", "requests", "socket",
             "asyncio", "time", "os", "subprocess", "urllib"}
# The engine's own modules (engine.py split by reason to change: the rules, their words, the verdicts).
ENGINE_MODULES = ["engine", "decision", "facts", "verdicts", "messages", "work", "analysis_rules", "stage_rules",
                  "request_rules", "drift_rules"]
ALLOWED_LOCAL = {"featurerollout.api", "featurerollout.core.conditions", "featurerollout.core.measurement",
                 "featurerollout.core.guardrail", "featurerollout.stats.sequential", "featurerollout.core.gates",
                 *(f"featurerollout.core.{m}" for m in ENGINE_MODULES)}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module", [*(f"core/{m}.py" for m in ENGINE_MODULES), "core/conditions.py", "core/guardrail.py",
               "stats/sequential.py", "stats/baselines.py", "core/gates.py"]
)
def test_the_engine_imports_nothing_that_does_io(module: str) -> None:
    names = imported_modules(PACKAGE / module)
    assert {n.split(".")[0] for n in names} & FORBIDDEN == set()
    local = {n for n in names if n.startswith("featurerollout")}
    assert local <= ALLOWED_LOCAL, local - ALLOWED_LOCAL


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_the_engine_never_reads_the_clock(module: str) -> None:
    source = (PACKAGE / "core" / f"{module}.py").read_text()
    for call in ("datetime.now", "datetime.utcnow", "date.today", "time.time", "monotonic"):
        assert call not in source
