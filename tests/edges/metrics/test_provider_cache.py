"""The batcher's providers (one HTTP session, and a CA file in /tmp, per Prometheus and credentials)
are a bounded LRU: past the bound the least recently used idle one is closed and its CA file deleted;
one a look still holds is never closed under it."""

from __future__ import annotations

import os

import pytest

from featurerollout.api import PrometheusProvider
from featurerollout.edges.metrics.batcher import MAX_PROVIDERS, BatchedProvider, QueryBatcher, batched_provider
from featurerollout.edges.metrics.prometheus import PrometheusCredentials

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def take(batcher: QueryBatcher, name: str) -> BatchedProvider:
    where = PrometheusProvider(address=f"https://{name}.example:9090")
    return batched_provider(batcher, where, PrometheusCredentials(ca_bundle=PEM + name))


class Spy:
    def __init__(self) -> None:
        self.closed: list[str] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    from featurerollout.edges.metrics import prometheus

    found = Spy()
    original = prometheus.PrometheusMetricProvider.close

    def close(self: prometheus.PrometheusMetricProvider) -> None:
        found.closed.append(self.address)
        original(self)

    monkeypatch.setattr(prometheus.PrometheusMetricProvider, "close", close)
    return found


async def test_eviction_closes_the_least_recently_used_idle_provider_and_deletes_its_ca_file(spy: Spy) -> None:
    batcher = QueryBatcher(max_providers=2)
    held = take(batcher, "a")  # a look still measuring with it
    a_file = held.provider._ca_file
    b = take(batcher, "b")
    b_file = b.provider._ca_file
    assert a_file and b_file and os.path.exists(a_file) and os.path.exists(b_file)
    await b.aclose()
    c = take(batcher, "c")  # three: the least recently used idle one (b) goes; a is held
    assert spy.closed == ["https://b.example:9090"]
    assert not os.path.exists(b_file) and os.path.exists(a_file)
    await held.aclose()
    await c.aclose()
    assert spy.closed == ["https://b.example:9090"]  # two left: within the bound
    d = take(batcher, "d")  # now a, idle and least recently used, goes
    assert spy.closed == ["https://b.example:9090", "https://a.example:9090"]
    assert not os.path.exists(a_file)
    await d.aclose()
    again = take(batcher, "c")  # a cached one is reused, and becomes the most recently used
    assert again.provider is c.provider
    await again.aclose()
    remaining = [p._ca_file for p in batcher._providers.values()]
    await batcher.aclose()
    assert all(f is not None and not os.path.exists(f) for f in remaining)


async def test_the_bound_holds_for_many_addresses(spy: Spy) -> None:
    batcher = QueryBatcher()
    files = []
    for index in range(MAX_PROVIDERS * 2):
        provider = take(batcher, f"p{index}")
        files.append(provider.provider._ca_file)
        await provider.aclose()
    assert len(batcher._providers) == MAX_PROVIDERS
    assert len(spy.closed) == MAX_PROVIDERS
    assert sum(1 for f in files if f and os.path.exists(f)) == MAX_PROVIDERS
    await batcher.aclose()
    assert not any(f and os.path.exists(f) for f in files)
