"""The layers hold (pyproject.toml's [tool.importlinter] contracts), and the contracts can fail.

Each case copies the package, breaks one rule in the copy, and runs the real `lint-imports` on it
with this repository's contracts: the break must be reported, by the contract that forbids it. The
unbroken copy must pass, so that a failure is the break's and not the harness's. Import cycles,
which no contract names, are found with grimp (import-linter's own graph).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.support.paths import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def copy_of_the_package(tmp_path: Path) -> Path:
    """The package and the contracts, copied into tmp_path; the copy's source root."""
    root = tmp_path / "operator"
    shutil.copytree(REPO / "operator" / "featurerollout", root / "featurerollout",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return root


def lint_imports(tmp_path: Path, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def add_import(root: Path, module: str, statement: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{statement}  # injected by tests/packaging\n")


def test_the_unbroken_package_keeps_every_contract(tmp_path: Path) -> None:
    done = lint_imports(tmp_path, copy_of_the_package(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "statement", "contract"), [
    ("featurerollout.core.engine", "import httpx", "do no I/O and read no clock"),
    ("featurerollout.core.engine", "import time", "do no I/O and read no clock"),
    ("featurerollout.stats.sequential", "import kubernetes", "do no I/O and read no clock"),
    ("featurerollout.edges.kube", "import featurerollout.process.reconciler", "Layers"),
    ("featurerollout.core.engine", "import featurerollout.edges.telemetry", "Layers"),
    ("featurerollout.edges.targets.configmap", "import featurerollout.edges.targets.httproute", "kind of target"),
    ("featurerollout.edges.notify.slack", "import featurerollout.edges.notify.teams", "notifier"),
    ("featurerollout.edges.metrics.prometheus", "import featurerollout.edges.notify.slack", "nothing of each other"),
])
def test_a_broken_rule_is_reported_by_its_contract(tmp_path: Path, module: str, statement: str,
                                                    contract: str) -> None:
    root = copy_of_the_package(tmp_path)
    add_import(root, module, statement)
    done = lint_imports(tmp_path, root)
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), done.stdout
    assert module in done.stdout


def import_cycles(package: str) -> set[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others (function-local imports
    included: they hide a cycle, they do not break it)."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {tuple(sorted((module, imported)))  # type: ignore[misc]
            for module in graph.modules for imported in graph.find_modules_directly_imported_by(module)
            if graph.chain_exists(importer=imported, imported=module)}


def test_there_is_no_import_cycle() -> None:
    assert import_cycles("featurerollout") == set()


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_of_the_package(tmp_path)
    add_import(root, "featurerollout.edges.telemetry",
               "def _hidden() -> None:\n    from featurerollout.edges.metrics import prometheus  # noqa")
    monkeypatch.syspath_prepend(str(root))
    for name in [name for name in sys.modules if name == "featurerollout" or name.startswith("featurerollout.")]:
        monkeypatch.delitem(sys.modules, name)
    found = import_cycles("featurerollout")
    assert ("featurerollout.edges.metrics.prometheus", "featurerollout.edges.telemetry") in found
