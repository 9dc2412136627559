"""A pytest plugin: fixtures for integration tests with real processes.

- `cluster`: a running Kubernetes API (today `featurerollout sandbox`; see support/cluster.py);
- `operator`: a factory that starts `featurerollout run` against it, all stopped at teardown;
- `kubectl`: the real kubectl bound to the cluster's kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster import REPO, Cluster, OperatorFactory, sandbox_fixture

KUBECTL = REPO / ".cache" / "bin" / "kubectl"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The Kubernetes API a process-level test runs on."""
    yield from sandbox_fixture(tmp_path)


@pytest.fixture
def operator(cluster: Cluster, tmp_path: Path) -> Iterator[OperatorFactory]:
    factory = OperatorFactory(cluster, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
        for process in factory.started:
            # Leave the operator's log in the test report when something failed.
            print(f"--- {process.log_path.name} ---\n{process.log()[-6000:]}")


@pytest.fixture
def kubectl(cluster: Cluster) -> Any:
    """Run the real kubectl against the cluster."""
    if not KUBECTL.exists():
        reason = "kubectl is not fetched yet (make tools)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), *args],
            capture_output=True, text=True, timeout=60, input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
