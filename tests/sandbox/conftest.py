"""Fixtures of the sandbox's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from featurerollout.sandbox.server import Sandbox

from .fixtures import FIXTURE_CRDS, Kubectl, require_kubectl, sandbox_process  # noqa: F401 - fixture


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An in-process sandbox on a free loopback port, serving crds/ and the fixture CRDs."""
    with Sandbox(crd_paths=list(FIXTURE_CRDS), bookmark_interval=0.2) as running:
        yield running


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A plain HTTP client on the sandbox."""
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


@pytest.fixture
def kubectl(sandbox: Sandbox, tmp_path: Path) -> Kubectl:
    """The real kubectl 1.33 on the in-process sandbox."""
    binary = require_kubectl()
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(binary, sandbox.write_kubeconfig(tmp_path / "kubeconfig"), home)
