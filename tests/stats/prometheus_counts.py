"""What the two real-Prometheus tests of exact counts share: the skip when Prometheus or promtool is
missing, the compare spec over `http_requests_total` by flag, variant and code, and the operator's own
measuring path (metrics/compare.py) run at one look."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from featurerollout.api import Compare, PrometheusProvider
from featurerollout.core.measurement import Measurement
from featurerollout.edges.metrics.compare import measure_compare
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider
from featurerollout.edges.metrics.queries import render_query
from tests.support.history import find_promtool
from tests.support.prometheus import PrometheusServer, find_prometheus

NEEDS_PROMETHEUS = [
    pytest.mark.integration,
    pytest.mark.skipif(find_prometheus() is None or find_promtool() is None,
                       reason="needs prometheus and promtool (make prometheus)"),
]

SELECTOR = 'http_requests_total{flag="{{flag}}",variant="%s"%s}'


def compare_spec(form: str = "selector") -> Compare:
    """Both arms' counts as counter selectors, in the older `sum(increase(...[{{window}}]))` form
    ("windowed"), or as an expression run as written ("as written")."""
    def part(variant: str, errors: bool) -> str:
        selector = SELECTOR % (variant, ',code="500"' if errors else "")
        return {"selector": selector, "windowed": f"sum(increase({selector}[{{{{window}}}}]))",
                "as written": f"sum(increase({selector}[{{{{window}}}}])) * 1"}[form]

    arms = {arm: {"errors": part(variant, True), "total": part(variant, False)}
            for arm, variant in (("treatment", "on"), ("control", "off"))}
    return Compare.model_validate({**arms, "maxIncrease": 0})


def operator_measures(
    server: PrometheusServer, spec: Compare, flag: str, start: datetime | None, at: datetime | None,
    provider: PrometheusMetricProvider | None = None,
) -> Measurement:
    """The compare Measurement the operator takes at `at` for a stage that began at `start` (through
    `provider`, by default the operator's own to `server`)."""
    if provider is None:
        provider = PrometheusMetricProvider(PrometheusProvider(address=server.url))

    def render(template: str) -> str:
        return render_query(template, flag=flag, name="r", namespace="d", interval="1m",
                            window=at - start if at is not None and start is not None else None)

    async def run() -> Measurement:
        assert provider is not None
        try:
            return await measure_compare(provider, spec, render, start=start, at=at)
        finally:
            await provider.aclose()

    return asyncio.run(run())
