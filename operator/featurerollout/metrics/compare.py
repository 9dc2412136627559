"""Measuring a compare metric: its four counting queries (errors and totals of treatment and
control), run concurrently, as one Measurement that carries the counts.

Any query that errors makes the whole measurement an Error naming that query; any without data
makes it NoData naming it. The statistics are not done here: the engine does them (featurerollout.guardrail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from featurerollout.api import Compare
from featurerollout.measurement import Measurement, MeasurementKind
from featurerollout.metrics.provider import MetricProvider
from featurerollout.stats.sequential import Arm

# The four queries, by their path in the spec under the metric.
PARTS: tuple[tuple[str, str], ...] = (
    ("treatment", "errors"),
    ("treatment", "total"),
    ("control", "errors"),
    ("control", "total"),
)


def compare_queries(compare: Compare) -> dict[str, str]:
    """The four query templates by path: `compare.treatment.errors`, ..."""
    return {
        f"compare.{arm}.{part}": getattr(getattr(compare, arm), part) for arm, part in PARTS
    }


def counts_measurement(values: dict[str, Measurement]) -> Measurement:
    """Four measurements (by path, as `compare_queries` names them) as one compare Measurement."""
    for path, measurement in values.items():
        if measurement.kind == MeasurementKind.ERROR:
            return Measurement.error(f"{path}: {measurement.detail}")
    for path, measurement in values.items():
        if measurement.kind != MeasurementKind.VALUE or measurement.value is None:
            return Measurement.no_data(f"{path}: {measurement.detail or 'no data'}")
    number = {path: float(m.value or 0.0) for path, m in values.items()}
    for arm in ("treatment", "control"):
        errors, total = number[f"compare.{arm}.errors"], number[f"compare.{arm}.total"]
        if errors < 0 or total < 0:
            return Measurement.error(f"compare.{arm}: counts must not be negative ({errors:g} of {total:g})")
        if errors > total * (1 + 1e-9):
            return Measurement.error(
                f"compare.{arm}: more errors ({errors:g}) than requests ({total:g}): do errors and total "
                "count the same requests over the same window?"
            )
    return Measurement.of_counts(
        Arm(number["compare.treatment.errors"], number["compare.treatment.total"]),
        Arm(number["compare.control.errors"], number["compare.control.total"]),
    )


async def measure_compare(
    provider: MetricProvider, compare: Compare, render: Callable[[str], str]
) -> Measurement:
    """Render and run the four queries concurrently; their counts as one Measurement."""
    templates = compare_queries(compare)
    rendered: dict[str, str] = {}
    for path, template in templates.items():
        try:
            rendered[path] = render(template)
        except ValueError as error:
            return Measurement.error(f"{path}: {error}")
    results = await asyncio.gather(*(provider.measure(query) for query in rendered.values()))
    return counts_measurement(dict(zip(rendered, results, strict=True)))
