"""Reusable pieces for tests that need a local Kubernetes API (a pytest plugin module).

    from sandbox.fixtures import SandboxProcess, require_kubectl, wait_for

- `Sandbox` (in-process, a background thread) for fast conformance tests;
- `SandboxProcess`: `featurerollout-sandbox` as a subprocess, for tests whose operator runs as
  another subprocess; drive its faults and read its request log with `.control`;
- `require_kubectl()`: the repo's kubectl 1.37, or skip (fail under CI=true);
- `wait_for(condition, timeout)`: poll a condition with a deadline (never sleep blindly).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.missing import skip_or_fail
from tests.support.paths import REPO

from featurerollout_sandbox.children import spawn
from featurerollout_sandbox.client import SandboxControl

FIXTURES = REPO / "tests" / "fixtures" / "crds"
CANARY_CRD = FIXTURES / "canaries.yaml"
FEATUREFLAG_CRD = FIXTURES / "openfeature-featureflags.yaml"
HTTPROUTE_CRD = FIXTURES / "gateway-httproutes.yaml"
FIXTURE_CRDS = (CANARY_CRD, FEATUREFLAG_CRD, HTTPROUTE_CRD)
KUBECTL = REPO / ".cache" / "bin" / "kubectl"
HELM = REPO / ".cache" / "bin" / "helm"

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # a condition may fail while the system is not there yet
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}{detail}")
        time.sleep(interval)


def require_kubectl() -> Path:
    """.cache/bin/kubectl; skips when missing, but fails under CI so that CI never silently skips."""
    return require_tool(KUBECTL)


def require_helm() -> Path:
    """.cache/bin/helm; skips when missing, but fails under CI."""
    return require_tool(HELM)


def require_tool(binary: Path) -> Path:
    """A binary fetched by scripts/fetch_kube_tools.py; skip if missing, fail if missing under CI=true."""
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    skip_or_fail(f"{binary} is missing: run `make tools` (scripts/fetch_kube_tools.py)")


class Kubectl:
    """The real kubectl against one kubeconfig, with a private HOME (fresh discovery cache)."""

    def __init__(self, binary: Path, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        self.env.pop("KUBECACHEDIR", None)

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30) -> Any:
        """Run kubectl; fail the test with its output when `check` and it fails."""
        done = subprocess.run(
            [str(self.binary), *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


class SandboxProcess:
    """`featurerollout-sandbox` (serving crds/ and `crds`) as a subprocess; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workdir: Path, crds: Sequence[Path] = FIXTURE_CRDS, extra_args: Sequence[str] = ()) -> None:
        self.kubeconfig = workdir / "sandbox.kubeconfig"
        self.log_path = workdir / "sandbox.log"
        self.args = [sys.executable, "-m", "featurerollout_sandbox", "--kubeconfig", str(self.kubeconfig),
                     "--crd-dir", str(REPO / "crds")]
        for crd in crds:
            self.args += ["--crd", str(crd)]
        self.args += list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.control = SandboxControl("http://127.0.0.1:0")

    def __enter__(self) -> SandboxProcess:
        self.kubeconfig.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = spawn(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            wait_for(lambda: self.kubeconfig.exists() or self.process.poll() is not None, 30, what="the kubeconfig")
            if self.process.poll() is not None:
                pytest.fail(f"the sandbox exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            self.control = SandboxControl.from_kubeconfig(self.kubeconfig)
            self.control.wait_ready(10)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT."""
        return self.control.base_url

    def stop(self) -> int | None:
        """Stop the process; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[SandboxProcess]:
    """A sandbox subprocess with the fixture CRDs (and crds/); stopped after the test."""
    with SandboxProcess(tmp_path) as process:
        yield process
