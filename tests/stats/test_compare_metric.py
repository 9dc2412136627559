"""A compare metric end to end without processes: the API and the CRD refuse bad ones naming the
field; the four counts become one measurement; the engine's decisions come from the sequential test;
`featurerollout status` shows both arms and the evidence."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from featurerollout import api
from featurerollout.commands.status_view import render
from featurerollout.core.guardrail import NO_CONTROL_MESSAGE
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics.compare import counts_measurement
from featurerollout.edges.metrics.queries import render_query
from featurerollout.stats.sequential import Arm
from tests.api.crd_helpers import crd_errors
from tests.core.builders import Rollout, make_spec, reasons

ERRORS = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s",code=~"5.."}[{{window}}]))'
TOTAL = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s"}[{{window}}]))'


def compare_metric(**compare: Any) -> dict[str, Any]:
    return {
        "name": "errors-vs-control",
        "compare": {
            "treatment": {"errors": ERRORS % "on", "total": TOTAL % "on"},
            "control": {"errors": ERRORS % "off", "total": TOTAL % "off"},
            **(compare or {"maxIncrease": 0}),
        },
    }


def spec_with(metric: dict[str, Any]) -> dict[str, Any]:
    return {
        "flag": "new-checkout",
        "target": {"configMap": {"name": "feature-flags"}},
        "analysis": {"interval": "1m", "prometheus": {"address": "http://prometheus:9090"}, "metrics": [metric]},
    }


def problems(spec: dict[str, Any]) -> list[str]:
    try:
        api.parse_spec(spec)
    except api.InvalidFeatureRollout as error:
        return error.problems
    return []


# --- the API -------------------------------------------------------------------------------------


def test_a_compare_metric_is_accepted_with_its_defaults() -> None:
    spec = spec_with(compare_metric(maxRatio=1.5))
    assert problems(spec) == [] and crd_errors(spec) == []
    metric = api.parse_spec(spec).analysis.metrics[0]  # type: ignore[union-attr]
    assert metric.compare is not None
    assert metric.compare.confidence == 0.99 and metric.compare.min_sample_per_arm == 1000
    assert metric.budget() == "treatment <= 1.5x control"


@pytest.mark.parametrize(
    ("change", "path", "pydantic_says", "crd_says"),
    [
        (lambda m: m["compare"].update(maxRatio=2), "spec.analysis.metrics[0].compare",
         api.COMPARE_BUDGET_MESSAGE, api.COMPARE_BUDGET_MESSAGE),
        (lambda m: m["compare"].pop("maxIncrease"), "spec.analysis.metrics[0].compare",
         api.COMPARE_BUDGET_MESSAGE, api.COMPARE_BUDGET_MESSAGE),
        (lambda m: m.update(query="vector(1)"), "spec.analysis.metrics[0]",
         api.METRIC_KIND_MESSAGE, api.METRIC_KIND_MESSAGE),
        (lambda m: m.update(max=0.01), "spec.analysis.metrics[0]",
         api.METRIC_COMPARE_BOUNDS_MESSAGE, api.METRIC_COMPARE_BOUNDS_MESSAGE),
        (lambda m: m["compare"].update(confidence=1), "spec.analysis.metrics[0].compare.confidence",
         "Input should be less than 1", "1 is greater than or equal to the maximum of 1"),
        (lambda m: m["compare"].update(confidence=0.3), "spec.analysis.metrics[0].compare.confidence",
         "Input should be greater than 0.5", "0.3 is less than or equal to the minimum of 0.5"),
        (lambda m: m["compare"].update(maxIncrease=-0.01), "spec.analysis.metrics[0].compare.maxIncrease",
         "Input should be greater than or equal to 0", "-0.01 is less than the minimum of 0"),
        (lambda m: m["compare"].update(maxIncrease=None, maxRatio=0.5), "spec.analysis.metrics[0].compare.maxRatio",
         "Input should be greater than or equal to 1", "0.5 is less than the minimum of 1"),
        (lambda m: m["compare"].update(minSamplePerArm=0), "spec.analysis.metrics[0].compare.minSamplePerArm",
         "Input should be greater than or equal to 1", "0 is less than the minimum of 1"),
        (lambda m: m["compare"].update(varianceInflation=0.5), "spec.analysis.metrics[0].compare.varianceInflation",
         "Input should be greater than or equal to 1", "0.5 is less than the minimum of 1"),
        (lambda m: m["compare"]["control"].pop("total"), "spec.analysis.metrics[0].compare.control.total",
         "Field required", "'total' is a required property"),
    ],
)
def test_an_invalid_compare_metric_is_refused_naming_the_field(
    change: Any, path: str, pydantic_says: str, crd_says: str
) -> None:
    metric = compare_metric()
    change(metric)
    metric["compare"] = {k: v for k, v in metric["compare"].items() if v is not None}
    spec = spec_with(metric)
    said = problems(copy.deepcopy(spec))
    assert any(p.startswith(f"{path}: {pydantic_says}") for p in said), said
    crd_path = path.rsplit(".", 1)[0] if crd_says.startswith("'") else path
    errors = crd_errors(spec)
    assert any(e.startswith(f"{crd_path}: {crd_says}") for e in errors), errors


def test_a_query_metric_still_needs_a_bound() -> None:
    spec = spec_with({"name": "m", "query": "vector(1)"})
    assert problems(spec) == [f"spec.analysis.metrics[0]: {api.METRIC_BOUND_MESSAGE}"]
    assert any(e.startswith(f"spec.analysis.metrics[0]: {api.METRIC_BOUND_MESSAGE}") for e in crd_errors(spec))


# --- measuring ----------------------------------------------------------------------------------


def test_window_renders_the_stage_so_far_in_whole_seconds() -> None:
    render = lambda w: render_query("x[{{window}}]", flag="f", name="n", namespace="d", interval="1m", window=w)  # noqa: E731
    assert render(timedelta(minutes=12, seconds=3.2)) == "x[12m4s]"
    assert render(timedelta(seconds=0.2)) == "x[1s]"
    assert render(None) == "x[1m]"


def four(te: float, tn: float, ce: float, cn: float) -> dict[str, Measurement]:
    return {
        "compare.treatment.errors": Measurement.of(te), "compare.treatment.total": Measurement.of(tn),
        "compare.control.errors": Measurement.of(ce), "compare.control.total": Measurement.of(cn),
    }


def test_four_counts_make_one_measurement() -> None:
    measurement = counts_measurement(four(3, 300, 27, 2700))
    assert measurement.kind == MeasurementKind.VALUE and measurement.counts == (Arm(3, 300), Arm(27, 2700))
    values = four(3, 300, 27, 2700)
    values["compare.control.total"] = Measurement.error("Prometheus rejected the query: parse error")
    assert counts_measurement(values).detail == "compare.control.total: Prometheus rejected the query: parse error"
    wrong = counts_measurement(four(400, 300, 27, 2700))
    assert wrong.kind == MeasurementKind.ERROR and "more errors (400) than requests (300)" in wrong.detail


def test_an_absent_errors_series_is_zero_errors_when_the_total_has_data() -> None:
    # A client library creates the error counter at the first error: none yet is none counted.
    values = four(3, 300, 27, 2700)
    values["compare.treatment.errors"] = Measurement.no_data("the query returned no series")
    counted = counts_measurement(values)
    assert counted.kind == MeasurementKind.VALUE and counted.counts == (Arm(0, 300), Arm(27, 2700))
    # Without a total there is nothing to compare: NoData names the total, not the errors.
    values["compare.treatment.total"] = Measurement.no_data("the query returned no series")
    missing = counts_measurement(values)
    assert missing.kind == MeasurementKind.NO_DATA and missing.detail.startswith("compare.treatment.total")


def test_the_old_errors_check_still_applies() -> None:
    wrong = counts_measurement(four(400, 300, 27, 2700))
    assert wrong.kind == MeasurementKind.ERROR and "more errors (400) than requests (300)" in wrong.detail


# --- the engine -----------------------------------------------------------------------------------

RAMP = ((10, "1m"), (25, "1m"), (50, "1m"), (100, "1m"))


def rollout(on_no_data: str = "Hold", **compare: Any) -> Rollout:
    metric = compare_metric(**compare)
    metric["compare"]["minSamplePerArm"] = 500
    roll = Rollout(make_spec(RAMP, metrics=[metric], interval="10s", on_no_data=on_no_data))
    roll.tick()
    return roll


def counts(te: float, tn: float, ce: float, cn: float) -> dict[str, Measurement]:
    return {"errors-vs-control": Measurement.of_counts(Arm(te, tn), Arm(ce, cn))}


@pytest.mark.parametrize("on_no_data", ["Hold", "Rollback", "Ignore"])
def test_below_the_minimum_sample_holds_whatever_on_no_data_says(on_no_data: str) -> None:
    roll = rollout(on_no_data)
    for _ in range(8):  # well past the stage's minute
        roll.tick(10, counts(400, 400, 0, 3600))  # all errors, but only 400 treatment requests
    assert roll.status.phase == api.Phase.PROGRESSING and roll.status.current_weight == 10
    (metric,) = roll.status.metrics
    assert metric.result == api.MetricResult.NO_DATA and metric.treatment is not None
    assert "not enough sample" in (metric.message or "")
    assert "below the minimum sample (holding)" in (roll.status.message or "")


def test_clear_harm_rolls_back_with_the_evidence_in_words() -> None:
    roll = rollout()
    roll.tick(10, counts(100, 4000, 180, 18000))  # 2.5% vs 1%
    assert roll.status.phase == api.Phase.ROLLED_BACK and roll.status.current_weight == 0
    assert roll.status.halt is not None
    message = roll.status.halt.message
    assert message.startswith("errors-vs-control failed its comparison: treatment 2.5% of 4000 vs control 1% of 18000: "
                              "worse than the budget allows, 99% confidence")
    assert "at 10% (stage 1/4)" in message and "RolledBack" in reasons(roll.decisions[-1])


def test_variance_inflation_asks_for_more_evidence_from_clumped_counts() -> None:
    # 2.5% vs 1% on 4000 treatment requests is harm for independent requests; if those requests
    # came from few users (a design effect of 8), the same counts are not evidence enough.
    independent, clumped = rollout(), rollout(varianceInflation=8, maxIncrease=0)
    independent.tick(10, counts(100, 4000, 180, 18000))
    clumped.tick(10, counts(100, 4000, 180, 18000))
    assert independent.status.phase == api.Phase.ROLLED_BACK
    assert clumped.status.phase == api.Phase.PROGRESSING
    assert clumped.status.metrics[0].result == api.MetricResult.PASSED


def test_equal_rates_promote_at_the_end_of_each_stage_and_succeed_at_100() -> None:
    roll = rollout()
    for _ in range(40):
        if roll.status.terminal:
            break
        # no control arm at 100%: the counts say so
        control = (0, 0) if roll.status.current_weight == 100 else (180, 18000)
        roll.tick(10, counts(20, 2000, *control))
    assert roll.status.phase == api.Phase.SUCCEEDED, roll.status.message
    assert roll.applied == [10, 25, 50, 100]
    (metric,) = roll.status.metrics
    assert metric.result == api.MetricResult.PASSED and metric.message == NO_CONTROL_MESSAGE


def test_failure_limit_applies_to_compare_verdicts() -> None:
    metric = compare_metric(maxIncrease=0)
    metric["failureLimit"] = 1
    metric["compare"]["minSamplePerArm"] = 500
    roll = Rollout(make_spec(RAMP, metrics=[metric], interval="10s"))
    roll.tick()
    roll.tick(10, counts(100, 4000, 180, 18000))
    assert roll.status.phase == api.Phase.PROGRESSING and "AnalysisFailing" in reasons(roll.decisions[-1])
    roll.tick(10, counts(200, 8000, 360, 36000))
    assert roll.status.phase == api.Phase.ROLLED_BACK


# --- featurerollout status ------------------------------------------------------------------------


def test_status_shows_both_arms_and_the_evidence() -> None:
    roll = rollout()
    roll.tick(10, counts(190, 10000, 900, 90000))
    body = {"metadata": {"name": "new-checkout", "namespace": "shop"}, "spec": roll.spec.to_wire(),
            "status": roll.status.to_wire()}
    view = render(body, roll.now)
    assert "errors-vs-control  +0.9 pt" in view
    assert "treatment <= control +0 pt" in view
    assert ("errors-vs-control: treatment 1.9% of 10000 vs control 1% of 90000: worse than the budget allows, "
            "99% confidence") in view
