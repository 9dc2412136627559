"""How one measurement becomes a metric's verdict (Passed, Failed, NoData, Error), and whether
the analysis passed at the current weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from featurerollout.api import (
    Analysis,
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Metric,
    MetricResult,
    MetricStatus,
    OnNoData,
    TemplateUsed,
)
from featurerollout.core.guardrail import compare_status
from featurerollout.core.measurement import Measurement, MeasurementKind


def outside(metric: Metric, value: float) -> bool:
    return (metric.max is not None and value > metric.max) or (metric.min is not None and value < metric.min)



def evaluate(
    analysis: Analysis, metric: Metric, previous: MetricStatus | None, measurement: Measurement, now: datetime,
    *, weight: float = 0, stages: int = 1,
) -> MetricStatus:
    if metric.compare is not None and measurement.kind == MeasurementKind.VALUE:
        return compare_status(metric.name, metric.compare, previous, measurement, now, weight=weight, stages=stages)
    failures = previous.consecutive_failures if previous is not None else 0
    errors = previous.consecutive_errors if previous is not None else 0
    value: float | None = None
    message: str | None = None
    if measurement.kind == MeasurementKind.VALUE and measurement.value is not None:
        value = measurement.value
        if outside(metric, value):
            result, failures, errors = MetricResult.FAILED, failures + 1, 0
            message = f"{value:g} is outside its budget {metric.budget()}"
        else:
            result, failures, errors = MetricResult.PASSED, 0, 0
    elif measurement.kind == MeasurementKind.ERROR:
        result, errors = MetricResult.ERROR, errors + 1
        message = measurement.detail or "the query failed"
    else:  # no data (or a VALUE without a number, which is no data too)
        result = MetricResult.NO_DATA
        message = measurement.detail or "the query returned no data"
        if analysis.on_no_data == OnNoData.ROLLBACK:
            failures, errors = failures + 1, 0
        elif analysis.on_no_data == OnNoData.IGNORE:
            failures, errors = 0, 0
    return MetricStatus(
        name=metric.name,
        value=value,
        result=result,
        consecutive_failures=failures,
        consecutive_errors=errors,
        message=message[:4096] if message else None,
        evaluated_at=now,
    )


def sampling(status: MetricStatus) -> bool:
    """A compare metric below its minimum sample: NoData that always holds, whatever onNoData says."""
    return status.result == MetricResult.NO_DATA and status.treatment is not None


def passes(analysis: Analysis, status: MetricStatus) -> bool:
    return status.result == MetricResult.PASSED or (
        status.result == MetricResult.NO_DATA and analysis.on_no_data == OnNoData.IGNORE and not sampling(status)
    )


def fresh(status: FeatureRolloutStatus, metric: MetricStatus) -> bool:
    """Evaluated at the current weight: strictly after the stage began. A measurement taken in the
    same decision that set the weight was taken at the weight before."""
    started = status.stage_started_at
    return metric.evaluated_at is not None and (started is None or metric.evaluated_at > started)


def analysis_passed(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> bool:
    """Every metric's latest evaluation passed at the current weight (always true without analysis)."""
    if spec.analysis is None:
        return True
    known = {m.name: m for m in status.metrics}
    for metric in spec.analysis.metrics:
        latest = known.get(metric.name)
        if latest is None or not fresh(status, latest) or not passes(spec.analysis, latest):
            return False
    return True


def record_templates(
    status: FeatureRolloutStatus, templates: Mapping[str, TemplateUsed | None] | None, now: datetime
) -> FeatureRolloutStatus:
    """The status with `metrics[].template` set on the evaluations made at `now`: which template, and
    which generation of it, each used (`templates`: for the metrics measured at this look). Earlier
    evaluations keep what they recorded, also when the engine took no evaluation from this look's
    measurements."""
    if not templates or status.last_analysis_at != now:
        return status
    metrics = []
    for metric in status.metrics:
        if metric.name in templates and metric.evaluated_at == status.last_analysis_at:
            metric = metric.model_copy(update={"template": templates[metric.name]})
        metrics.append(metric)
    return status.model_copy(update={"metrics": metrics})
