"""Measuring through a provider (interface.py): one metric's query rendered and run, NoData
explained, and all of one rollout's metrics at once (a compare metric through compare.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from featurerollout.api import Metric
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics import nodata
from featurerollout.edges.metrics.compare import measure_compare
from featurerollout.edges.metrics.grouping import SENTINEL
from featurerollout.edges.metrics.interface import MetricProvider as MetricProvider
from featurerollout.edges.metrics.queries import render_query


async def measure_query(
    provider: MetricProvider,
    template: str,
    *,
    flag: str,
    name: str,
    namespace: str,
    interval: str | timedelta,
    window: timedelta | None = None,
    args: Mapping[str, str] | None = None,
) -> Measurement:
    """Render one metric's query (a template's `args` too) and run it. A batching provider
    (metrics/batcher.py) is also given the query rendered with grouping.SENTINEL for `{{flag}}`,
    so that rollouts whose queries differ only in their flag, inline or from one MetricTemplate
    with the same args, share one grouped query. Raises ValueError when the template does not
    render; a provider never raises for server or query problems. NoData says which part of the
    query had no data (explain_no_data)."""
    def render(for_flag: str) -> str:
        return render_query(template, flag=for_flag, name=name, namespace=namespace, interval=interval,
                            window=window, args=args)

    query = render(flag)
    measure_for_flag = getattr(provider, "measure_for_flag", None)
    if measure_for_flag is not None:
        result: Measurement = await measure_for_flag(query, render(SENTINEL), flag)
    else:
        result = await provider.measure(query)
    if result.kind is MeasurementKind.NO_DATA:
        return await explain_no_data(provider, query, result)
    return result


async def explain_no_data(provider: MetricProvider, query: str, whole: Measurement) -> Measurement:
    """NoData, with which top-level part of the query had no data and the fix (metrics/nodata.py):
    one extra round of queries, asked only on NoData."""
    parts = nodata.parts_to_ask(query)
    if not parts:
        return whole
    answers = await asyncio.gather(*(provider.measure(part) for part in parts))
    return nodata.explained(query, whole, list(zip(parts, answers, strict=True)))


async def measure_all(
    provider: MetricProvider,
    metrics: Sequence[Metric],
    *,
    flag: str,
    name: str,
    namespace: str,
    interval: str | timedelta,
    window: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, Measurement]:
    """Render and run all of one rollout's metrics concurrently; returns a Measurement per metric name.

    `window` (the time since the stage began) fills `{{window}}`; with `now` (the moment the queries
    are evaluated at) a compare metric counts exactly over the stage from `now - window` to `now`
    (metrics/compare.py). A template that does not render
    (an unknown `{{variable}}`) is an Error for that metric only; the others are still measured.
    """
    def render(template: str) -> str:
        return render_query(template, flag=flag, name=name, namespace=namespace, interval=interval, window=window)

    async def one(metric: Metric) -> Measurement:
        if metric.compare is not None:
            try:
                start = now - window if now is not None and window is not None else None
                return await measure_compare(provider, metric.compare, render, start=start, at=now)
            except Exception as error:  # as below: one metric's bug must not take the others down
                return Measurement.error(f"metric {metric.name!r}: {type(error).__name__}: {error}")
        try:
            render(metric.query or "")
        except ValueError as error:
            return Measurement.error(f"metric {metric.name!r}: {error}")
        try:
            return await measure_query(provider, metric.query or "", flag=flag, name=name, namespace=namespace,
                                       interval=interval, window=window)
        except Exception as error:  # a provider bug must not take the other metrics down with it
            return Measurement.error(f"metric {metric.name!r}: {type(error).__name__}: {error}")

    results = await asyncio.gather(*(one(metric) for metric in metrics))
    return {metric.name: result for metric, result in zip(metrics, results, strict=True)}
