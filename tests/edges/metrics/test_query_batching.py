"""Batched vs unbatched answers on a REAL Prometheus: a round (metrics/batcher.py) answers every
rollout's query exactly as the rollout's own query does, with fewer queries sent."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, Gauge
from tests.edges.metrics.servers import exporter
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, free_port, start_prometheus, wait_for_query

from featurerollout import api
from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement
from featurerollout.edges import telemetry
from featurerollout.edges.kube import Kube
from featurerollout.edges.metrics.batcher import Ask, QueryBatcher, answer_round
from featurerollout.edges.metrics.grouping import SENTINEL
from featurerollout.edges.metrics.measurer import Measurer
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider
from featurerollout.edges.metrics.queries import render_query
from featurerollout.edges.metrics.templates import Resolution, resolve

pytestmark = pytest.mark.integration

# Flags with data; "absent" has none; "nan-flag" answers NaN (0/0); "dotted.flag" needs escaping,
# and "dottedxflag" is there to be matched by mistake if it is not escaped; "never-failed" has no
# code="500" series at all, as an app that creates its series at the first increment.
FLAGS = ["checkout", "search", "dotted.flag", "nan-flag", "absent", "never-failed"]


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    requests = Gauge("fr_batch_requests", "requests", ["flag", "code", "pod"], registry=reg)
    for flag, ok, errors in (("checkout", 90, 10), ("search", 200, 1), ("dotted.flag", 50, 5),
                             ("dottedxflag", 1000, 999)):
        for pod in ("p1", "p2"):
            requests.labels(flag=flag, code="200", pod=pod).set(ok)
            requests.labels(flag=flag, code="500", pod=pod).set(errors)
    requests.labels(flag="nan-flag", code="200", pod="p1").set(0)
    requests.labels(flag="never-failed", code="200", pod="p1").set(40)
    latency = Gauge("fr_batch_latency", "latency", ["flag", "pod"], registry=reg)
    for flag, value in (("checkout", 0.2), ("search", 0.05), ("dotted.flag", 1.5), ("nan-flag", math.nan)):
        latency.labels(flag=flag, pod="p1").set(value)
        latency.labels(flag=flag, pod="p2").set(value * 2)
    return reg


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    require_prometheus()
    with exporter(registry()) as port, start_prometheus(
        tmp_path_factory.mktemp("prometheus"), targets=[f"127.0.0.1:{port}"]
    ) as server:
        wait_for_query(server.url, "count(fr_batch_requests)", lambda r: r.value == 18, timeout=30)
        # Enough samples for the *_over_time windows below.
        wait_for_query(server.url, 'count_over_time(fr_batch_latency{flag="checkout",pod="p1"}[1m])',
                       lambda r: (r.value or 0) >= 3, timeout=30)
        yield server


TEMPLATES = [
    'sum(fr_batch_requests{flag="{{flag}}",code="500"}) / sum(fr_batch_requests{flag="{{flag}}"})',
    'max(max_over_time(fr_batch_latency{flag="{{flag}}"}[1m]))',
    'min(fr_batch_latency{flag="{{flag}}"})',
    '100 * count(fr_batch_requests{flag="{{flag}}", code="200"})',
    'sum(rate(fr_batch_requests{flag="{{flag}}"}[{{interval}}]))',
    # a missing error series counted as zero (grouping's rule 6)
    '(sum(fr_batch_requests{flag="{{flag}}",code="500"}) or vector(0)) / sum(fr_batch_requests{flag="{{flag}}"})',
    # Not batchable: each flag gets its own query, and the same answers (errors included).
    'fr_batch_requests{flag="{{flag}}"}',
    'avg(fr_batch_latency{flag="{{flag}}"})',
]


def same(a: Measurement, b: Measurement) -> bool:
    if a.kind != b.kind or a.detail != b.detail:
        return False
    if a.value is None or b.value is None:
        return a.value is b.value
    return math.isclose(a.value, b.value, rel_tol=1e-9)


def queries_sent() -> dict[str, float]:
    return {b: telemetry.prometheus_queries.labels(b)._value.get() for b in ("true", "false")}


async def test_a_round_answers_every_flag_as_its_own_query_does(prometheus: PrometheusServer) -> None:
    provider = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url))
    try:
        asks = []
        for template in TEMPLATES:
            for flag in FLAGS:
                def render(f: str, template: str = template) -> str:
                    return render_query(template, flag=f, name="r", namespace="ns", interval="30s")
                asks.append(Ask(render(flag), render(SENTINEL), flag))
        before = queries_sent()
        batched = await answer_round(provider, asks)
        after = queries_sent()
        unbatched = {ask: await provider.measure(ask.query) for ask in asks}
        # The gauges do not change, so both ways read the same data.
        differ = {ask.query: (batched[ask], unbatched[ask]) for ask in asks if not same(batched[ask], unbatched[ask])}
        assert differ == {}
        # Sanity: the data is what the exporter serves, so the comparison compared something.
        by_query = {ask.query: batched[ask] for ask in asks}
        def ratio(flag: str) -> str:
            return f'sum(fr_batch_requests{{flag="{flag}",code="500"}}) / sum(fr_batch_requests{{flag="{flag}"}})'
        assert by_query[ratio("checkout")].value == pytest.approx(0.1)
        assert by_query[ratio("dotted.flag")].value == pytest.approx(5 / 55)
        assert by_query['max(max_over_time(fr_batch_latency{flag="absent"}[1m]))'].kind == "NoData"
        assert by_query['min(fr_batch_latency{flag="nan-flag"})'].kind == "NoData"
        assert by_query['fr_batch_requests{flag="checkout"}'].kind == "Error"  # four series
        def zeroed(flag: str) -> str:
            return (f'(sum(fr_batch_requests{{flag="{flag}",code="500"}}) or vector(0)) / '
                    f'sum(fr_batch_requests{{flag="{flag}"}})')
        assert by_query[ratio("never-failed")].kind == "NoData"
        assert by_query[zeroed("never-failed")] == Measurement.of(0.0)
        assert by_query[zeroed("checkout")].value == pytest.approx(0.1)
        assert by_query[zeroed("absent")].kind == "NoData" and by_query[zeroed("nan-flag")].kind == "NoData"
        # 6 batchable templates: one grouped query each; 2 others: one query per flag.
        assert after["true"] - before["true"] == 6
        assert after["false"] - before["false"] == 2 * len(FLAGS)
    finally:
        await provider.aclose()


async def test_a_failing_grouped_query_falls_back_to_each_flags_own_query() -> None:
    # Nothing listens there: the grouped query fails, and each flag gets its own query's Error.
    address = f"http://127.0.0.1:{free_port()}"
    provider = PrometheusMetricProvider(PrometheusProvider(address=address, timeout="2s"))
    try:
        template = 'sum(fr_batch_requests{flag="{{flag}}"})'
        asks = [Ask(render_query(template, flag=f, name="r", namespace="ns", interval="1s"),
                    render_query(template, flag=SENTINEL, name="r", namespace="ns", interval="1s"), f)
                for f in ("checkout", "search")]
        before = queries_sent()
        batched = await answer_round(provider, asks)
        after = queries_sent()
        assert (after["true"] - before["true"], after["false"] - before["false"]) == (1, 2)
        for ask in asks:
            own = await provider.measure(ask.query)
            assert batched[ask].kind == "Error" and same(batched[ask], own), (batched[ask], own)
    finally:
        await provider.aclose()


async def test_rollouts_using_one_template_with_the_same_args_share_one_grouped_query(
    prometheus: PrometheusServer,
) -> None:
    """A MetricTemplate's query with `{{args.NAME}}` is grouped by flag like an inline one, through the
    reconciler's path (Measurer.measure_resolution with the batching provider); the answers are
    each rollout's own query's. Another value of the argument is another shape: its own query."""
    template = api.MetricTemplate.model_validate({
        "kind": "ClusterMetricTemplate", "metadata": {"name": "errors", "generation": 1},
        "spec": {"query": 'sum(fr_batch_requests{flag="{{flag}}",code="{{args.code}}"})'
                          ' / sum(fr_batch_requests{flag="{{flag}}"})',
                 "args": [{"name": "code", "value": "500"}], "max": 0.5},
    })
    ref = {"name": "errors", "kind": "ClusterMetricTemplate"}

    def resolution(flag: str, args: dict[str, str] | None = None) -> Resolution:
        metric = {"name": "errors", "templateRef": ref, **({"args": args} if args else {})}
        spec = api.parse_spec({"flag": flag, "target": {"configMap": {"name": "c"}},
                               "analysis": {"prometheus": {"address": prometheus.url}, "metrics": [metric]}})
        return resolve(spec, {(api.TemplateKind.CLUSTER_METRIC_TEMPLATE, "errors"): template}, "ns")

    batcher = QueryBatcher(window=0.5)
    # As the reconciler's: its providers in the shared round of queries (no auth: no Secret is read).
    measurer = Measurer(cast(Kube, None), queries=batcher)

    rollouts = [("checkout", None), ("search", None), ("dotted.flag", None), ("checkout", {"code": "200"})]
    try:
        before = queries_sent()
        answers = await asyncio.gather(*(
            measurer.measure_resolution(resolution(flag, args), flag=flag, name=f"r-{i}", namespace="ns", window=None)
            for i, (flag, args) in enumerate(rollouts)
        ))
        after = queries_sent()
    finally:
        await batcher.aclose()
    # The three rollouts with code=500 in one grouped query; code=200 (one flag) on its own.
    assert (after["true"] - before["true"], after["false"] - before["false"]) == (1, 1)
    assert [a["errors"].value for a in answers] == pytest.approx([0.1, 1 / 201, 5 / 55, 0.9])
    own = PrometheusMetricProvider(PrometheusProvider(address=prometheus.url))
    try:
        for (flag, args), answer in zip(rollouts, answers, strict=True):
            query = render_query(template.spec.query or "", flag=flag, name="r", namespace="ns", interval="1m",
                                 args={"code": "500", **(args or {})})
            assert same(answer["errors"], await own.measure(query)), (flag, args)
    finally:
        await own.aclose()
