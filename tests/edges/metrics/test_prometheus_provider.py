"""The Prometheus provider against the REAL Prometheus server, scraping an exporter the test serves."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.edges.metrics.servers import auth_proxy, exporter, sample_registry, slow_prometheus
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, free_port, start_prometheus, wait_for_query

from featurerollout.api import Metric, PrometheusProvider
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics import (
    PrometheusCredentials,
    PrometheusMetricProvider,
    credentials_from_secret,
    measure_all,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus for the module, scraping the sample gauges every second, with data in it."""
    require_prometheus()
    with exporter(sample_registry()) as port, start_prometheus(
        tmp_path_factory.mktemp("prometheus"), targets=[f"127.0.0.1:{port}"]
    ) as server:
        wait_for_query(server.url, "count(fr_test_multi)", lambda r: r.value == 3, timeout=30)
        wait_for_query(server.url, "fr_test_labeled", lambda r: r.series == 2, timeout=30)
        yield server


def provider(address: str, timeout: str = "10s", **options: object) -> PrometheusMetricProvider:
    spec = PrometheusProvider.model_validate({"address": address, "timeout": timeout, **options})
    return PrometheusMetricProvider(spec)


async def measure(address: str, query: str) -> Measurement:
    prom = provider(address)
    try:
        return await prom.measure(query)
    finally:
        await prom.aclose()


async def test_scalar_is_a_value(prometheus: PrometheusServer) -> None:
    assert await measure(prometheus.url, "scalar(fr_test_gauge) * 2") == Measurement.of(0.5)
    assert await measure(prometheus.url, "1 + 1") == Measurement.of(2)


async def test_one_element_vector_is_a_value(prometheus: PrometheusServer) -> None:
    assert await measure(prometheus.url, "fr_test_gauge") == Measurement.of(0.25)
    assert await measure(prometheus.url, "sum(fr_test_multi)") == Measurement.of(6)


async def test_empty_vector_is_no_data(prometheus: PrometheusServer) -> None:
    result = await measure(prometheus.url, 'fr_test_multi{shard="nope"}')
    assert result == Measurement.no_data("the query returned no series")


async def test_nan_is_no_data(prometheus: PrometheusServer) -> None:
    scalar = await measure(prometheus.url, "0/0")
    vector = await measure(prometheus.url, "fr_test_gauge * 0 / 0")
    assert scalar.kind is MeasurementKind.NO_DATA and "NaN" in scalar.detail
    assert vector.kind is MeasurementKind.NO_DATA


async def test_infinity_is_a_value_that_fails_any_budget(prometheus: PrometheusServer) -> None:
    result = await measure(prometheus.url, "fr_test_gauge / 0")
    assert result.kind is MeasurementKind.VALUE
    assert result.value is not None and math.isinf(result.value) and result.value > 0


async def test_several_series_is_an_error(prometheus: PrometheusServer) -> None:
    result = await measure(prometheus.url, "fr_test_multi")
    assert result.kind is MeasurementKind.ERROR
    assert result.detail == (
        "the query returned 3 series; it must yield one number: aggregate it, e.g. sum(...)"
    )


async def test_range_vector_is_an_error(prometheus: PrometheusServer) -> None:
    result = await measure(prometheus.url, "fr_test_gauge[1m]")
    assert result.kind is MeasurementKind.ERROR
    assert "range vector" in result.detail


async def test_string_is_an_error(prometheus: PrometheusServer) -> None:
    result = await measure(prometheus.url, '"hello"')
    assert result.kind is MeasurementKind.ERROR
    assert "string 'hello'" in result.detail


async def test_invalid_promql_is_an_error_with_prometheus_message(prometheus: PrometheusServer) -> None:
    query = "sum(rate(http_requests_total[1m]) /"
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}).json()
    assert answer["errorType"] == "bad_data"

    result = await measure(prometheus.url, query)

    assert result.kind is MeasurementKind.ERROR
    assert result.detail == f"Prometheus rejected the query: {answer['error']}"
    assert "parse error" in result.detail


async def test_execution_error_is_an_error_with_prometheus_message(prometheus: PrometheusServer) -> None:
    # Two series with the same labels after `by`: Prometheus refuses the many-to-many match.
    result = await measure(prometheus.url, "fr_test_multi + on() fr_test_multi")
    assert result.kind is MeasurementKind.ERROR
    assert "many-to-many" in result.detail or "matching" in result.detail, result.detail


async def test_unreachable_server_is_an_error() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = await measure(address, "vector(1)")
    assert result.kind is MeasurementKind.ERROR
    assert result.detail.startswith(f"Prometheus at {address} is unreachable: ")
    assert "Connection refused" in result.detail
    assert time.monotonic() - started < 5  # no retries with backoff


async def test_unresolvable_host_is_an_error() -> None:
    result = await measure("http://prometheus.invalid:9090", "vector(1)")
    assert result.kind is MeasurementKind.ERROR
    assert "Prometheus at http://prometheus.invalid:9090 is unreachable: " in result.detail


async def test_timeout_is_an_error_and_does_not_delay_a_concurrent_query(
    prometheus: PrometheusServer,
) -> None:
    finished: dict[str, float] = {}
    started = time.monotonic()

    async def timed(name: str, prom: PrometheusMetricProvider, query: str) -> Measurement:
        try:
            return await prom.measure(query)
        finally:
            finished[name] = time.monotonic() - started
            await prom.aclose()

    async with slow_prometheus(delay=30) as slow_url:
        slow_task = asyncio.create_task(timed("slow", provider(slow_url, timeout="1s"), "vector(1)"))
        await asyncio.sleep(0.05)  # the slow query is in flight first
        fast = await timed("fast", provider(prometheus.url), "fr_test_gauge")
        slow = await slow_task

    assert slow.kind is MeasurementKind.ERROR
    assert slow.detail.startswith("query timed out after 1s"), slow.detail
    assert fast == Measurement.of(0.25)
    # Ordering, not performance: the fast query did not wait for the slow one, and the slow one
    # ended at its timeout, not at the server's 30 s.
    assert finished["fast"] < finished["slow"] < 10, finished


async def test_many_slow_queries_never_block_the_event_loop() -> None:
    async with slow_prometheus(delay=30) as slow_url:
        prom = provider(slow_url, timeout="1s")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        results = await asyncio.gather(*(prom.measure("vector(1)") for _ in range(8)))
        ticker.cancel()
        await prom.aclose()
    assert all(r.kind is MeasurementKind.ERROR and "timed out" in r.detail for r in results)
    assert ticks > 20  # the loop kept running while eight queries waited in threads


async def test_bearer_token_and_custom_headers_reach_prometheus(prometheus: PrometheusServer) -> None:
    required = {"Authorization": "Bearer s3cr3t", "X-Scope-OrgID": "tenant-a"}
    async with auth_proxy(prometheus.url, required) as proxy:
        credentials = credentials_from_secret({"token": "s3cr3t\n"})
        spec = PrometheusProvider(address=proxy.url, headers={"X-Scope-OrgID": "tenant-a"})
        prom = PrometheusMetricProvider(spec, credentials)
        result = await prom.measure("fr_test_gauge")
        online = await prom.is_online()
        await prom.aclose()
    assert result == Measurement.of(0.25)
    assert online
    assert proxy.seen[0]["Authorization"] == "Bearer s3cr3t"


async def test_basic_auth_reaches_prometheus(prometheus: PrometheusServer) -> None:
    expected = "Basic " + base64.b64encode(b"alice:wonder land").decode()
    async with auth_proxy(prometheus.url, {"Authorization": expected}) as proxy:
        credentials = credentials_from_secret({"username": "alice", "password": "wonder land"})
        prom = PrometheusMetricProvider(PrometheusProvider(address=proxy.url), credentials)
        result = await prom.measure("fr_test_gauge")
        await prom.aclose()
    assert result == Measurement.of(0.25)


async def test_wrong_credentials_are_an_error_that_says_so(prometheus: PrometheusServer) -> None:
    async with auth_proxy(prometheus.url, {"Authorization": "Bearer right"}) as proxy:
        prom = PrometheusMetricProvider(
            PrometheusProvider(address=proxy.url), PrometheusCredentials(token="wrong")
        )
        result = await prom.measure("fr_test_gauge")
        online = await prom.is_online()
        await prom.aclose()
    assert result.kind is MeasurementKind.ERROR
    assert "refused the credentials (HTTP 401)" in result.detail
    assert not online


async def test_is_online(prometheus: PrometheusServer) -> None:
    up = provider(prometheus.url)
    down = provider(f"http://127.0.0.1:{free_port()}")
    assert await up.is_online()
    assert not await down.is_online()
    await up.aclose()
    await down.aclose()


async def test_query_variables_are_rendered(prometheus: PrometheusServer) -> None:
    metrics = [
        Metric(
            name="labeled",
            query='max(max_over_time(fr_test_labeled{flag="{{flag}}", rollout="{{ name }}", '
            'ns="{{namespace}}"}[{{ interval }}]))',
            max=1,
        ),
        Metric(name="typo", query='fr_test_labeled{flag="{{ flga }}"}', max=1),
        Metric(name="several", query="fr_test_multi", max=1),
    ]
    prom = provider(prometheus.url)
    results = await measure_all(
        prom, metrics, flag="new-checkout", name="checkout-rollout", namespace="shop", interval="1m30s"
    )
    await prom.aclose()

    assert results["labeled"] == Measurement.of(0.5)
    assert results["typo"].kind is MeasurementKind.ERROR
    assert "unknown query variable {{flga}}" in results["typo"].detail
    assert results["several"].kind is MeasurementKind.ERROR


async def test_tls_with_a_ca_bundle_from_the_secret_is_written_to_a_file_and_removed(tmp_path: Path) -> None:
    # No TLS server here: check only what the provider does with the bundle.
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    prom = PrometheusMetricProvider(
        PrometheusProvider(address="https://prometheus.example:9090"), credentials_from_secret({"ca.crt": pem})
    )
    ca_file = prom._ca_file
    assert ca_file is not None and Path(ca_file).read_text() == pem
    await prom.aclose()
    assert not Path(ca_file).exists()
