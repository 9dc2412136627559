"""Metric templates, resolved: a rollout's `templateRef` metrics turned into the query metrics the
engine decides on. Pure: the templates come in already read (metrics/template_reader.py reads them).

A templateRef metric takes from its template the query, the Prometheus to ask (when the template
names one) and the default budget; `max`/`min` set on the metric replace the template's bounds as a
pair (a budget is the pair: a rollout that says `max: 0.02` means "at most 0.02", not "at most
0.02 and at least the template's min"), and `failureLimit` set on the metric replaces the
template's. The template's `{{args.NAME}}` get the metric's args, else the template's defaults.

Anything that keeps a metric from resolving (a missing or unreadable template, a missing or
unknown argument, no budget anywhere) is an error for that metric alone, with a message that
names the metric, the template and the field: the engine then treats it as an analysis error
(no promotion; after consecutiveErrorLimit, onError), never as a breach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from featurerollout import api
from featurerollout.edges.metrics.queries import template_arguments

TemplateKey = tuple[api.TemplateKind, str]  # (kind, name)


@dataclass(frozen=True)
class ResolvedMetric:
    """One metric as the engine and the provider see it."""

    # A query metric with the merged budget; unresolved: the metric as written (no number reaches it).
    metric: api.Metric
    # The values of `{{args.NAME}}` (None for a metric written without a template).
    args: Mapping[str, str] | None = None
    # The template's Prometheus; None: the rollout's spec.analysis.prometheus, else the operator's default.
    prometheus: api.PrometheusProvider | None = None
    template: api.TemplateUsed | None = None
    error: str | None = None


@dataclass(frozen=True)
class Resolution:
    """A spec with its templates resolved, and how each metric was."""

    spec: api.FeatureRolloutSpec  # the engine's view: every resolvable templateRef became a query metric
    metrics: Mapping[str, ResolvedMetric]


def template_refs(spec: api.FeatureRolloutSpec) -> list[TemplateKey]:
    """The templates a spec uses, each once, in order."""
    refs: list[TemplateKey] = []
    for metric in spec.analysis.metrics if spec.analysis is not None else []:
        if metric.template_ref is not None:
            key = (metric.template_ref.kind, metric.template_ref.name)
            if key not in refs:
                refs.append(key)
    return refs


def describe(kind: api.TemplateKind, name: str, namespace: str) -> str:
    """`MetricTemplate shop/error-rate` or `ClusterMetricTemplate error-rate`."""
    return f"{kind} {namespace}/{name}" if kind == api.TemplateKind.METRIC_TEMPLATE else f"{kind} {name}"


def resolve_metric(
    metric: api.Metric, index: int, template: api.MetricTemplate | str | None, namespace: str
) -> ResolvedMetric:
    """One metric resolved against its template (or the error met reading it, as a string)."""
    ref = metric.template_ref
    if ref is None:
        return ResolvedMetric(metric)
    field = f"spec.analysis.metrics[{index}]"
    what = describe(ref.kind, ref.name, namespace)
    # What the engine sees while unresolved: the metric as written, with an int failureLimit.
    unresolved = metric.model_copy(update={"failure_limit": metric.failure_limit or 0})

    def failed(problem: str, generation: int | None = None) -> ResolvedMetric:
        used = api.TemplateUsed(kind=ref.kind, name=ref.name, generation=generation)
        return ResolvedMetric(unresolved, template=used, error=f"metric {metric.name!r}: {problem}")

    if template is None:
        return failed(f"{what} not found ({field}.templateRef): create it or fix the name")
    if isinstance(template, str):
        return failed(f"{what} could not be read ({field}.templateRef): {template}")
    generation = template.metadata.generation
    spec = template.spec
    used_args = template_arguments(spec.query)
    declared = [arg.name for arg in spec.args]
    given = dict(metric.args or {})
    unknown = sorted(set(given) - set(declared) - set(used_args))
    if unknown:
        known = ", ".join(sorted(set(declared) | set(used_args))) or "none"
        return failed(f"{field}.args: {what} has no argument {', '.join(map(repr, unknown))} (its arguments: "
                      f"{known})", generation)
    values = {arg.name: arg.value for arg in spec.args if arg.value is not None} | given
    missing = [name for name in used_args if name not in values]
    missing += [name for name in declared if name not in values and name not in missing]
    if missing:
        return failed(f"{field}.args: {what} needs {', '.join(map(repr, missing))}: give "
                      f"{'it' if len(missing) == 1 else 'them'} in args", generation)
    if metric.max is not None or metric.min is not None:
        low, high = metric.min, metric.max
    else:
        low, high = spec.min, spec.max
    if low is None and high is None:
        return failed(f"no budget: neither {field} nor {what} sets max or min", generation)
    failure_limit = metric.failure_limit if "failure_limit" in metric.model_fields_set else spec.failure_limit
    try:
        resolved = api.Metric(
            name=metric.name, query=spec.query, max=high, min=low, failure_limit=failure_limit or 0
        )
    except ValidationError as error:
        problems = "; ".join(api.field_problems(error, field))
        return failed(f"{what} with this metric's overrides: {problems}", generation)
    return ResolvedMetric(
        resolved, args=values, prometheus=spec.prometheus,
        template=api.TemplateUsed(kind=ref.kind, name=ref.name, generation=generation),
    )


def resolve(
    spec: api.FeatureRolloutSpec, templates: Mapping[TemplateKey, api.MetricTemplate | str | None], namespace: str
) -> Resolution:
    """Every metric of a spec resolved against the templates read (None: not found; a string: why
    it could not be read or parsed)."""
    if spec.analysis is None:
        return Resolution(spec, {})
    resolved = [
        resolve_metric(
            metric, index,
            templates.get((metric.template_ref.kind, metric.template_ref.name)) if metric.template_ref else None,
            namespace,
        )
        for index, metric in enumerate(spec.analysis.metrics)
    ]
    analysis = spec.analysis.model_copy(update={"metrics": [r.metric for r in resolved]})
    return Resolution(spec.model_copy(update={"analysis": analysis}), {r.metric.name: r for r in resolved})
