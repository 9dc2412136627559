"""A pytest plugin: fixtures for integration tests with real processes.

- `cluster`: a running Kubernetes API, the sandbox or the real kube-apiserver (support/real_server.py);
- `operator`: a factory that starts `featurerollout run` against it, all stopped at teardown;
- `kubectl`: the real kubectl bound to the cluster's kubeconfig.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import REPO, Cluster, OperatorFactory, real_fixture, sandbox_fixture
from tests.support.missing import skip_or_fail
from tests.support.real_server import CrdBaseline, require_real, selected_servers, session_control_plane
from tests.support.scenario import Given

# The fixture CRDs the sandbox's own tests serve (tests/tools/sandbox/fixtures.py), applied to the real
# server too so that both start in the same state.
FIXTURE_CRDS = sorted((REPO / "tests" / "fixtures" / "crds").glob("*.yaml"))

KUBECTL = REPO / ".cache" / "bin" / "kubectl"


@pytest.fixture(scope="session")
def real_apiserver_crds() -> Iterator[tuple[Path, CrdBaseline]]:
    """One real kube-apiserver (with etcd) for the session: its admin kubeconfig, and the CRDs it
    started with (put back by `real_apiserver` whenever a test changed one)."""
    require_real()
    with session_control_plane(FIXTURE_CRDS) as (_, admin):
        yield admin, CrdBaseline(admin)


@pytest.fixture
def real_apiserver(real_apiserver_crds: tuple[Path, CrdBaseline]) -> Path:
    """The session's real kube-apiserver, with the CRDs it started with; its admin kubeconfig."""
    admin, baseline = real_apiserver_crds
    baseline.restore()
    return admin


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`cluster` runs on the servers FEATUREROLLOUT_TEST_APISERVER selects (support/real_server.py);
    a test marked `sandbox_only(reason)` (fault injection, say) on the sandbox alone."""
    if "cluster" in metafunc.fixturenames:
        servers = ("sandbox",) if metafunc.definition.get_closest_marker("sandbox_only") else selected_servers()
        metafunc.parametrize("cluster", servers, indirect=True)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """The Kubernetes API a process-level test runs on: the sandbox or the real kube-apiserver."""
    if request.param == "sandbox":
        yield from sandbox_fixture(tmp_path)
    else:
        yield from real_fixture(request.getfixturevalue("real_apiserver"))


@pytest.fixture
def sandbox_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The sandbox, always: for tests whose point is its fault injection or request log."""
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
def given(cluster: Cluster, operator: OperatorFactory) -> Given:
    """The start of a given/when/then scenario on this test's cluster (tests/support/scenario.py)."""
    return Given(cluster, operator)


@pytest.fixture
def kubectl(cluster: Cluster) -> Any:
    """Run the real kubectl against the cluster."""
    if not KUBECTL.exists():
        skip_or_fail("kubectl is not fetched yet (make tools)")

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), *args],
            capture_output=True, text=True, timeout=60, input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
