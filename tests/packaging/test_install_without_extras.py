"""`pip install .` (what the operator image runs) gives a working operator and CLI, and nothing
of the sandbox or the demo (their own distributions under tools/): no local API server in an image
that runs in real clusters.

A fresh virtualenv, the real pip, this checkout, the pinned versions (constraints.txt). Slow-ish
(a minute on a loaded machine, mostly pip), so it is in the integration tier.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import REPO

pytestmark = pytest.mark.integration
# What only the sandbox and the demo bring: their own code, and what only they depend on.
SANDBOX_AND_DEMO_MODULES = ("featurerollout_sandbox", "featurerollout_demo", "celpy")


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with `pip install .` and no extra, from what the image's build context holds
    (the sources its Dockerfile copies; so the build also leaves no build/ in the checkout)."""
    venv = tmp_path_factory.mktemp("plain") / "venv"
    context = venv.parent / "context"
    context.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "operator", context / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "-c", str(REPO / "constraints.txt")]
    done = subprocess.run([*pip, "--upgrade", "pip"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*pip, "--build-constraint", str(REPO / "constraints.txt"), str(context)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "featurerollout"), *args], capture_output=True, text=True,
                          timeout=120, cwd=venv.parent)


def test_no_sandbox_or_demo_dependency_is_installed(plain_venv: Path) -> None:
    python = str(plain_venv / "bin" / "python")
    for module in SANDBOX_AND_DEMO_MODULES:
        done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, timeout=60,
                              cwd=plain_venv.parent)
        assert done.returncode != 0, f"{module} is importable after a plain `pip install .`"
        assert "ModuleNotFoundError" in done.stderr


@pytest.mark.parametrize("command", ["run", "status", "pause", "crd"])
def test_the_operator_and_the_cli_work(plain_venv: Path, command: str) -> None:
    done = run(plain_venv, command, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: featurerollout {command}" in done.stdout


def test_the_operator_loads_its_whole_code_path(plain_venv: Path) -> None:
    """`--help` alone parses arguments; the operator's modules must import too."""
    python = str(plain_venv / "bin" / "python")
    modules = ("featurerollout.process.handlers, featurerollout.process.reconciler, "
               "featurerollout.edges.targets.factory, featurerollout.edges.metrics.prometheus, "
               "featurerollout.edges.telemetry")
    done = subprocess.run([python, "-c", f"import {modules}"], capture_output=True, text=True, timeout=120,
                          cwd=plain_venv.parent)
    assert done.returncode == 0, done.stderr


def test_the_installed_package_holds_no_sandbox_or_demo_code(plain_venv: Path) -> None:
    python = str(plain_venv / "bin" / "python")
    listing = ("import importlib.metadata as m; "
               "print('\\n'.join(str(f) for f in m.distribution('featurerollout').files or []))")
    done = subprocess.run([python, "-c", listing], capture_output=True, text=True, timeout=60, cwd=plain_venv.parent)
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert any(f.endswith("featurerollout/core/engine.py") for f in files), files[:20]
    # (commands/sandbox.py is only the pointer to featurerollout-sandbox)
    carried = [f for f in files if any(part in f for part in ("featurerollout/sandbox/", "featurerollout/demo/",
                                                              "featurerollout_sandbox", "featurerollout_demo"))]
    assert carried == []


def test_the_old_sandbox_command_says_where_it_went(plain_venv: Path, tmp_path: Path) -> None:
    done = run(plain_venv, "sandbox", "--kubeconfig", str(tmp_path / "kubeconfig"))
    assert done.returncode == 2
    assert "featurerollout-sandbox --kubeconfig FILE --crd-dir crds" in done.stderr
    assert "pip install ./tools/sandbox" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "kubeconfig").exists()


def test_simulate_png_without_the_extra_says_how_to_install_it(plain_venv: Path) -> None:
    """`featurerollout simulate --png` needs matplotlib (the `simulate` extra): without it, it says so
    before fetching anything (the Prometheus named here does not exist)."""
    rollout = plain_venv.parent / "rollout.yaml"
    rollout.write_text((REPO / "examples" / "new-checkout.yaml").read_text())
    done = run(plain_venv, "simulate", "-f", str(rollout), "--prometheus", "http://127.0.0.1:9",
               "--from", "-1h", "--png", str(plain_venv.parent / "out.png"))
    assert done.returncode == 2
    assert "pip install 'featurerollout[simulate]'" in done.stderr
    assert not (plain_venv.parent / "out.png").exists()
