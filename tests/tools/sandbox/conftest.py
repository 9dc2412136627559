"""Fixtures of the sandbox's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.real_server import conformance_servers, real_http_client, reset

from featurerollout_sandbox.server import Sandbox

from .fixtures import FIXTURE_CRDS, REPO, Kubectl, require_kubectl, sandbox_process  # noqa: F401 - fixture


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An in-process sandbox on a free loopback port, serving crds/ and the fixture CRDs."""
    with Sandbox(crd_dir=REPO / "crds", crd_paths=list(FIXTURE_CRDS), bookmark_interval=0.2) as running:
        yield running


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that also asks for the in-process `sandbox` (its fault injection, request log or
    internals) is about the sandbox itself, and one marked `sandbox_only(reason)` depends on what
    the real tier lacks (the reason says what, docs/sandbox.md lists each): both run on the
    sandbox only."""
    deselected = [item for item in items if _server_of(item) == "real"
                  and ("sandbox" in item.fixturenames or item.get_closest_marker("sandbox_only"))]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def _server_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("api") if callspec is not None else None


@pytest.fixture(params=conformance_servers())
def api(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A plain HTTP client on the server under test: the in-process sandbox, or the real
    kube-apiserver (one per session, emptied before each test) as its admin."""
    if request.param == "sandbox":
        sandbox: Sandbox = request.getfixturevalue("sandbox")
        with httpx.Client(base_url=sandbox.url, timeout=10) as client:
            yield client
        return
    admin = request.getfixturevalue("real_apiserver")
    reset(admin)
    with real_http_client(admin) as client:
        yield client


@pytest.fixture
def kubectl(api: httpx.Client, request: pytest.FixtureRequest, tmp_path: Path) -> Kubectl:
    """The real kubectl on the server under test (the same one as `api`)."""
    binary = require_kubectl()
    home = tmp_path / "home"
    home.mkdir()
    if _server_of(request.node) == "real":
        kubeconfig: Path = request.getfixturevalue("real_apiserver")
    else:
        sandbox: Sandbox = request.getfixturevalue("sandbox")
        kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    return Kubectl(binary, kubeconfig, home)
