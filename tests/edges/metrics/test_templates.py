"""Resolving a rollout's templateRef metrics against their templates (pure: no server)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from featurerollout import api
from featurerollout.edges.metrics.queries import MissingTemplateArgument, UnknownQueryVariable, render_query
from featurerollout.edges.metrics.templates import resolve, resolve_metric, template_refs

CLUSTER = api.TemplateKind.CLUSTER_METRIC_TEMPLATE
QUERY = 'sum(rate(x{flag="{{flag}}",variant="{{args.variant}}",job="{{args.job}}"}[{{interval}}]))'


def template(generation: int = 3, **spec: Any) -> api.MetricTemplate:
    body: dict[str, Any] = {"query": QUERY, "args": [{"name": "variant", "value": "on"}, {"name": "job"}],
                            "max": 0.01, "failureLimit": 2}
    body.update(spec)
    return api.MetricTemplate.model_validate(
        {"kind": "ClusterMetricTemplate", "metadata": {"name": "error-rate", "generation": generation}, "spec": body}
    )


def metric(**fields: Any) -> api.Metric:
    data: dict[str, Any] = {"name": "errors", "templateRef": {"name": "error-rate", "kind": "ClusterMetricTemplate"},
                            "args": {"job": "shop"}}
    data.update(fields)
    return api.Metric.model_validate(data)


def test_the_template_gives_query_budget_and_failure_limit() -> None:
    resolved = resolve_metric(metric(), 0, template(), "shop")
    assert resolved.error is None
    assert resolved.metric.query == QUERY and resolved.metric.max == 0.01 and resolved.metric.min is None
    assert resolved.metric.failure_limit == 2 and resolved.metric.template_ref is None
    assert resolved.args == {"variant": "on", "job": "shop"}
    assert resolved.template == api.TemplateUsed(kind=CLUSTER, name="error-rate", generation=3)


def test_the_metric_overrides_the_bounds_as_a_pair_and_the_failure_limit() -> None:
    resolved = resolve_metric(metric(min=0.5, failureLimit=0), 0, template(min=0.001), "shop")
    assert (resolved.metric.min, resolved.metric.max, resolved.metric.failure_limit) == (0.5, None, 0)


def test_args_given_win_over_defaults() -> None:
    resolved = resolve_metric(metric(args={"job": "shop", "variant": "canary"}), 0, template(), "shop")
    assert resolved.args == {"variant": "canary", "job": "shop"}


def test_a_missing_template_is_an_error_naming_it_and_the_field() -> None:
    resolved = resolve_metric(metric(), 2, None, "shop")
    assert resolved.error == ("metric 'errors': ClusterMetricTemplate error-rate not found "
                              "(spec.analysis.metrics[2].templateRef): create it or fix the name")
    assert resolved.template == api.TemplateUsed(kind=CLUSTER, name="error-rate")
    namespaced = metric(templateRef={"name": "error-rate"})
    assert "MetricTemplate shop/error-rate not found" in (resolve_metric(namespaced, 0, None, "shop").error or "")


def test_an_unreadable_template_says_why() -> None:
    resolved = resolve_metric(metric(), 0, "403 Forbidden", "shop")
    assert resolved.error is not None and "could not be read" in resolved.error and "403 Forbidden" in resolved.error


def test_a_missing_argument_names_it() -> None:
    resolved = resolve_metric(metric(args=None), 1, template(), "shop")
    assert resolved.error is not None
    assert "spec.analysis.metrics[1].args: ClusterMetricTemplate error-rate needs 'job'" in resolved.error
    assert resolved.template is not None and resolved.template.generation == 3


def test_an_argument_used_by_the_query_but_not_declared_is_still_needed() -> None:
    resolved = resolve_metric(metric(), 0, template(args=[{"name": "job"}]), "shop")
    assert resolved.error is not None and "needs 'variant'" in resolved.error


def test_an_unknown_argument_is_an_error() -> None:
    resolved = resolve_metric(metric(args={"job": "a", "jbo": "b"}), 0, template(), "shop")
    assert resolved.error is not None
    assert "has no argument 'jbo' (its arguments: job, variant)" in resolved.error


def test_no_budget_anywhere_is_an_error() -> None:
    resolved = resolve_metric(metric(), 0, template(max=None), "shop")
    assert resolved.error is not None and "no budget" in resolved.error


def test_a_pair_is_never_mixed_with_the_templates() -> None:
    # The metric's own min/max are checked by the API; taken as a pair they cannot cross the template's.
    resolved = resolve_metric(metric(min=0.5, max=0.7), 0, template(min=0.001), "shop")
    assert resolved.error is None and (resolved.metric.min, resolved.metric.max) == (0.5, 0.7)


def test_resolve_keeps_plain_metrics_and_the_order() -> None:
    spec = api.parse_spec({
        "flag": "f", "target": {"configMap": {"name": "c"}},
        "analysis": {"metrics": [
            {"name": "plain", "query": "vector(0)", "max": 1},
            metric().to_wire(),
            {"name": "other", "templateRef": {"name": "gone", "kind": "ClusterMetricTemplate"}},
        ]},
    })
    assert template_refs(spec) == [(CLUSTER, "error-rate"), (CLUSTER, "gone")]
    resolution = resolve(spec, {(CLUSTER, "error-rate"): template(), (CLUSTER, "gone"): None}, "shop")
    assert resolution.spec.analysis is not None
    names = [m.name for m in resolution.spec.analysis.metrics]
    assert names == ["plain", "errors", "other"]
    assert resolution.metrics["plain"].args is None and resolution.metrics["plain"].error is None
    assert resolution.metrics["errors"].metric.query == QUERY
    assert resolution.metrics["other"].error is not None
    # The engine's view of an unresolved metric says so in words, instead of crashing on no bounds.
    assert resolution.metrics["other"].metric.budget() == "ClusterMetricTemplate gone's budget"


def test_args_render_in_one_pass() -> None:
    query = render_query(QUERY, flag="f", name="n", namespace="ns", interval="30s",
                         args={"variant": "{{flag}}", "job": "shop"})
    assert query == 'sum(rate(x{flag="f",variant="{{flag}}",job="shop"}[30s]))'


def test_args_placeholders_without_args_are_unknown_variables() -> None:
    with pytest.raises(UnknownQueryVariable):
        render_query(QUERY, flag="f", name="n", namespace="ns", interval="30s")
    with pytest.raises(MissingTemplateArgument, match=r"no value for \{\{args.job\}\}"):
        render_query(QUERY, flag="f", name="n", namespace="ns", interval=timedelta(seconds=1),
                     args={"variant": "on"})


def test_the_status_records_the_template_only_for_this_looks_evaluations() -> None:
    from datetime import UTC, datetime

    from featurerollout.core.measurement import Measurement
    from featurerollout.core.verdicts import record_templates
    from featurerollout.edges.metrics.measurer import templates_used

    earlier, now = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    spec = api.parse_spec({"flag": "f", "target": {"configMap": {"name": "c"}},
                           "analysis": {"metrics": [metric().to_wire()]}})
    resolution = resolve(spec, {(CLUSTER, "error-rate"): template(generation=4)}, "shop")
    old = api.TemplateUsed(kind=CLUSTER, name="error-rate", generation=3)
    measured = {"errors": Measurement.of(0.001)}

    def status_at(evaluated: datetime) -> api.FeatureRolloutStatus:
        return api.FeatureRolloutStatus(last_analysis_at=evaluated, metrics=[
            api.MetricStatus(name="errors", result=api.MetricResult.PASSED, evaluated_at=evaluated, template=old)])

    fresh = record_templates(status_at(now), templates_used(resolution, measured), now)
    assert fresh.metrics[0].template == api.TemplateUsed(kind=CLUSTER, name="error-rate", generation=4)
    # The engine took no evaluation at this look (e.g. not started): the old record stands.
    assert record_templates(status_at(earlier), templates_used(resolution, measured), now).metrics[0].template == old
    assert record_templates(status_at(now), templates_used(resolution, None), now).metrics[0].template == old
