"""The `replicas` fixture: leader-elected operator processes (tests/process/ha/support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.ha.support import Replicas
from tests.support.cluster import Cluster


@pytest.fixture
def replicas(cluster: Cluster, tmp_path: Path) -> Iterator[Replicas]:
    if cluster.kind != "real":
        pytest.skip("leader election is tested on the real kube-apiserver (its Lease semantics)")
    factory = Replicas(cluster, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
        for process in factory.started:
            print(f"--- {process.log_path.name} ---\n{process.log()[-4000:]}")
