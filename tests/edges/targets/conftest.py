"""Fixtures shared by the target tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.cluster import Cluster

from featurerollout.edges.kube import Kube


@pytest.fixture
def kube(cluster: Cluster) -> Iterator[Kube]:
    """The operator's own API client, on the test's server; its worker pool is shut down after."""
    made = Kube(api=cluster.api)
    try:
        yield made
    finally:
        made.pool.shutdown(wait=False)
