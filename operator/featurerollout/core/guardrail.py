"""The verdict of a compare metric: the treatment's counts against the control's, through the
always-valid sequential test of `featurerollout.stats`. Pure: no I/O, no clock.

The engine calls `compare_status` for a metric with `compare`; what follows (failureLimit, the
rollback, the hold) is the engine's, exactly as for a metric with a query and a budget.

 * Below `minSamplePerArm` in either arm: NoData that always holds the stage (whatever onNoData
   says): a young stage has no evidence either way, so it neither promotes nor rolls back.
 * At 100% there is no control arm left to compare with: Passed, and the message says so. The
   comparisons of the earlier stages are what let the rollout get there.
 * Otherwise Failed (the treatment is worse than the budget allows, at the confidence level) or
   Passed (enough sample, no evidence of harm); the message carries the evidence in words.
"""

from __future__ import annotations

from datetime import datetime

from featurerollout.api import ArmStatus, Compare, FeatureRolloutSpec, MetricResult, MetricStatus
from featurerollout.core.measurement import Measurement
from featurerollout.stats.sequential import Decision, compare

__all__ = ["NO_CONTROL_MESSAGE", "compare_status", "stages_with_control"]

NO_CONTROL_MESSAGE = "no control arm at 100%: nothing left to compare with"


def stages_with_control(spec: FeatureRolloutSpec) -> int:
    """How many stages run a comparison (every stage below 100%); each spends its share of alpha."""
    return sum(1 for stage in spec.stages if stage.weight < 100)


def compare_status(
    name: str,
    spec: Compare,
    previous: MetricStatus | None,
    measurement: Measurement,
    now: datetime,
    *,
    weight: float,
    stages: int,
) -> MetricStatus:
    """The MetricStatus of one look at a compare metric whose four counts were measured."""
    failures = previous.consecutive_failures if previous is not None else 0
    if measurement.counts is None:  # a provider bug: never a verdict
        return MetricStatus(name=name, result=MetricResult.ERROR, message="the comparison had no counts",
                            consecutive_failures=failures,
                            consecutive_errors=(previous.consecutive_errors if previous else 0) + 1,
                            evaluated_at=now)
    treatment, control = measurement.counts
    arms = {
        "treatment": ArmStatus(errors=treatment.errors, total=treatment.total),
        "control": ArmStatus(errors=control.errors, total=control.total),
    }
    if weight >= 100:
        return MetricStatus(name=name, result=MetricResult.PASSED, message=NO_CONTROL_MESSAGE,
                            evaluated_at=now, **arms)
    evidence = compare(
        treatment, control, max_increase=spec.max_increase, max_ratio=spec.max_ratio,
        confidence=spec.confidence, min_sample=spec.min_sample_per_arm, stages_with_control=stages,
        variance_inflation=spec.variance_inflation,
    )
    words = evidence.words()[:4096]
    if evidence.decision == Decision.NO_DATA:
        return MetricStatus(name=name, result=MetricResult.NO_DATA, consecutive_failures=failures,
                            message=words, evaluated_at=now, **arms)
    failed = evidence.decision == Decision.FAIL
    return MetricStatus(
        name=name,
        value=evidence.estimate,
        result=MetricResult.FAILED if failed else MetricResult.PASSED,
        consecutive_failures=failures + 1 if failed else 0,
        message=words,
        evaluated_at=now,
        **arms,
    )
