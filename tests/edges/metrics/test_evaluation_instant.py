"""A look's queries are evaluated at the look's instant (Prometheus's `time` parameter), on the provider
alone and through the batcher, so that `featurerollout simulate` can ask the same question later:
checked on a real Prometheus serving a backfilled history whose counter differs at each instant."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.history import find_promtool, history_prometheus
from tests.support.missing import skip_or_fail
from tests.support.prometheus import PrometheusServer, find_prometheus

from featurerollout.api import PrometheusProvider
from featurerollout.edges.metrics.batcher import Ask, QueryBatcher, answer_round
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def prometheus_and_promtool() -> None:
    """Before the module's servers: skip without them, fail under CI."""
    if find_prometheus() is None or find_promtool() is None:
        skip_or_fail("needs prometheus and promtool (the Debian package prometheus: make prometheus)")

START = datetime(2026, 6, 1, tzinfo=UTC)
SCRAPE = timedelta(seconds=15)
TOTAL = 'sum(http_requests_total{flag="f",variant="off"})'


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """10 req/s for an hour, all to the control: its counter is 150 higher at each 15 s scrape."""
    with history_prometheus(tmp_path_factory.mktemp("instant"), flag="f", start=START, end=START + timedelta(hours=1),
                            scrape=SCRAPE, treatment_share=0.0, rps=10.0, control_errors=0.0,
                            bad_from=START + timedelta(hours=2), bad_rate=0.0) as server:
        yield server


def expected(at: datetime) -> float:
    return 150.0 * ((at - START) // SCRAPE)


def test_the_provider_evaluates_at_the_instant_it_is_given(prometheus: PrometheusServer) -> None:
    moments = [START + timedelta(minutes=10, seconds=7.5), START + timedelta(minutes=30, milliseconds=1)]

    async def ask() -> list[float | None]:
        shared = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url))
        own = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url), at=moments[1])
        try:
            return [(await shared.measure(TOTAL, moments[0])).value, (await own.measure(TOTAL)).value,
                    (await shared.measure(TOTAL)).value]
        finally:
            await shared.aclose()
            await own.aclose()

    at_first, at_second, now = asyncio.run(ask())
    assert (at_first, at_second) == (expected(moments[0]), expected(moments[1]))
    assert now is None  # Prometheus's now is long after the history: nothing within the lookback


def test_a_round_answers_each_instant_with_its_own_value(prometheus: PrometheusServer) -> None:
    moments = [START + timedelta(minutes=m) for m in (5, 6, 6, 20)]

    async def ask() -> dict[Ask, float | None]:
        provider = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url))
        try:
            answers = await answer_round(provider, [Ask(TOTAL, at=at) for at in moments])
        finally:
            await provider.aclose()
        return {ask: m.value for ask, m in answers.items()}

    answers = asyncio.run(ask())
    assert {ask.at: value for ask, value in answers.items()} == {at: expected(at) for at in moments}


def test_looks_that_start_together_share_an_instant_never_later_than_their_own() -> None:
    batcher = QueryBatcher(window=0.1)
    first = START
    assert batcher.instant(first) == first
    assert batcher.instant(first + timedelta(milliseconds=60)) == first
    assert batcher.instant(first + timedelta(milliseconds=150)) == first + timedelta(milliseconds=150)
    assert batcher.instant(first) == first  # before the shared instant: its own
