"""A NoData measurement says which part of the query had no data and points to the fix
(metrics/nodata.py), and the provider asks the parts only when the whole is NoData."""

from __future__ import annotations

import pytest
from tests.support.fixtures import PrometheusFactory
from tests.support.prometheus import wait_for_query_async

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics import PrometheusMetricProvider, nodata
from featurerollout.edges.metrics.provider import measure_query
from featurerollout_demo.service import DemoService, FixedWeights

ERRORS = 'sum(rate(http_requests_total{flag="f",code=~"5.."}[1m]))'
TOTAL = 'sum(rate(http_requests_total{flag="f"}[1m]))'
RATIO = f"{ERRORS}\n/ {TOTAL}"
EMPTY = Measurement.no_data("the query returned no series")


def test_the_top_level_parts_of_a_ratio() -> None:
    assert nodata.parts_to_ask(RATIO) == [ERRORS, TOTAL]
    # outer parentheses go; the lowest precedence operator is the cut; modifiers stay with it
    assert nodata.split(f"(({ERRORS} or vector(0)) / {TOTAL})") == nodata.Split(
        (f"({ERRORS} or vector(0))", TOTAL), ("/",))
    assert nodata.split("a / on(flag) group_left b > bool 0.1") == nodata.Split(("a / on(flag) group_left b", "0.1"),
                                                                                 (">",))
    assert nodata.split("-a + 1e-3 - b") == nodata.Split(("-a", "1e-3", "b"), ("+", "-"))
    # nothing at the top level (a function, a selector): nothing to ask
    assert nodata.parts_to_ask('histogram_quantile(0.95, sum by (le) (rate(b{x="a/b"}[1m])))') == []
    assert nodata.parts_to_ask('x{error="a or b"} * 100') == ['x{error="a or b"}']  # a number is not asked
    assert nodata.parts_to_ask("a + b + c + d + e") == []  # more than MAX_PARTS: not worth a round


def test_a_missing_error_series_is_named_with_the_or_vector_fix() -> None:
    detail = nodata.explain(RATIO, EMPTY, {ERRORS: EMPTY, TOTAL: Measurement.of(3.0)})
    assert f"`{ERRORS}` returned no series (`{TOTAL}` has data)" in detail
    assert f"`({ERRORS} or vector(0)) / ...`" in detail


def test_a_missing_total_is_no_traffic_or_a_short_window() -> None:
    detail = nodata.explain(RATIO, EMPTY, {ERRORS: Measurement.of(0.0), TOTAL: EMPTY})
    assert f"`{TOTAL}` returned no series" in detail and "or vector(0)" not in detail
    assert "no traffic yet, a rate window too short for the scrape interval" in detail


def test_nothing_anywhere_a_zero_divisor_and_parts_that_do_not_match() -> None:
    assert "no part of it has data" in nodata.explain(RATIO, EMPTY, {ERRORS: EMPTY, TOTAL: EMPTY})
    nan = Measurement.of(float("nan"))
    assert f"the divisor `{TOTAL}` is 0" in nodata.explain(RATIO, nan, {ERRORS: Measurement.of(0.0),
                                                                         TOTAL: Measurement.of(0.0)})
    mismatch = nodata.explain(RATIO, EMPTY, {ERRORS: Measurement.of(1.0), TOTAL: Measurement.of(2.0)})
    assert "share no series" in mismatch
    # an error among the parts, or no answers: the plain detail
    assert nodata.explain(RATIO, EMPTY, {ERRORS: Measurement.error("boom"), TOTAL: EMPTY}) == EMPTY.detail
    assert nodata.explain(RATIO, EMPTY, {}) == EMPTY.detail


class Counting:
    """A provider that answers from a table and counts what it was asked."""

    def __init__(self, answers: dict[str, Measurement]) -> None:
        self.answers, self.asked = answers, []  # type: ignore[var-annotated]

    async def measure(self, query: str) -> Measurement:
        self.asked.append(query)
        return self.answers[query]

    async def is_online(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


async def test_the_parts_are_asked_only_on_no_data() -> None:
    provider = Counting({RATIO: Measurement.of(0.01), ERRORS: EMPTY, TOTAL: Measurement.of(1.0)})
    assert await measure_query(provider, RATIO, flag="f", name="n", namespace="ns", interval="1m") == \
        Measurement.of(0.01)
    assert provider.asked == [RATIO]
    provider = Counting({RATIO: EMPTY, ERRORS: EMPTY, TOTAL: Measurement.of(1.0)})
    measured = await measure_query(provider, RATIO, flag="f", name="n", namespace="ns", interval="1m")
    assert measured.kind is MeasurementKind.NO_DATA and "or vector(0)" in measured.detail
    assert sorted(provider.asked) == sorted([RATIO, ERRORS, TOTAL])  # one extra round, each part once


@pytest.mark.integration
async def test_an_app_that_never_failed_through_the_real_prometheus(prometheus_server: PrometheusFactory) -> None:
    """The demo service creates its 500 series at the first 500: a healthy flag's ratio is NoData,
    and the status detail names the error part and gives the fix; the shipped form measures 0."""
    service = DemoService(FixedWeights({"f": 100}), flags=["f"], rps=50, seed=5)
    await service.start()
    try:
        prom = prometheus_server(targets=[service.url.removeprefix("http://")])
        await wait_for_query_async(prom.url, f"{TOTAL} > 0", timeout=40)
        provider = PrometheusMetricProvider(PrometheusProvider(address=prom.url))
        try:
            plain = await measure_query(provider, RATIO, flag="f", name="n", namespace="ns", interval="1m")
            fixed = await measure_query(provider, f"({ERRORS} or vector(0)) / {TOTAL}", flag="f", name="n",
                                        namespace="ns", interval="1m")
            # The latency template's form: a value with traffic, NoData (not an Error) without any.
            p95 = ('histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
                   '{flag="{{flag}}",variant="on"}[1m])))')
            served = await measure_query(provider, p95, flag="f", name="n", namespace="ns", interval="1m")
            quiet = await measure_query(provider, p95, flag="never-served", name="n", namespace="ns", interval="1m")
        finally:
            await provider.aclose()
    finally:
        await service.stop()
    assert plain.kind is MeasurementKind.NO_DATA
    assert f"`{ERRORS}` returned no series (`{TOTAL}` has data)" in plain.detail, plain.detail
    assert fixed == Measurement.of(0.0), fixed
    assert served.kind is MeasurementKind.VALUE and served.value is not None and 0 < served.value < 0.1, served
    assert quiet == Measurement.no_data("the query returned no series"), quiet
