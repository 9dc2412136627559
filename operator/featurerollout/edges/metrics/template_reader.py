"""The edge of metric templates: read them from the API at each look, and measure a resolved spec,
each metric on its own Prometheus.

Templates are read with a plain GET each time (no watch, no cache), so that an edit takes effect at
the very next evaluation and the generation recorded in the status is the one used. That costs one
GET per distinct template per look; the operator needs only `get` on the two kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from pydantic import ValidationError

from featurerollout import GROUP, VERSION, api
from featurerollout.core.measurement import Measurement
from featurerollout.edges.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.edges.metrics import provider_for
from featurerollout.edges.metrics.prometheus import InvalidCredentials, PrometheusCredentials
from featurerollout.edges.metrics.provider import MetricProvider, measure_all, measure_query
from featurerollout.edges.metrics.queries import render_query
from featurerollout.edges.metrics.templates import Resolution, TemplateKey, describe

FORBIDDEN = 403
PLURALS: dict[api.TemplateKind, str] = {
    api.TemplateKind.METRIC_TEMPLATE: "metrictemplates",
    api.TemplateKind.CLUSTER_METRIC_TEMPLATE: "clustermetrictemplates",
}

NO_PROMETHEUS = (
    "no Prometheus to ask: set spec.analysis.prometheus.address (or the template's spec.prometheus), or run "
    "the operator with --prometheus-address (chart value prometheus.address)"
)


async def read_template(kube: Kube, namespace: str, key: TemplateKey) -> api.MetricTemplate | str | None:
    """One template: the model, None when it does not exist, or why it could not be read."""
    kind, name = key
    try:
        if kind == api.TemplateKind.METRIC_TEMPLATE:
            # A rollout's MetricTemplate is always in its own namespace: no reference across namespaces.
            body = await kube.call(
                kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURALS[kind], name
            )
        else:
            body = await kube.call(kube.custom.get_cluster_custom_object, GROUP, VERSION, PLURALS[kind], name)
    except Exception as error:
        code = status_code(error)
        if code == NOT_FOUND:
            return None
        if code == FORBIDDEN:
            return (f"the operator may not read {PLURALS[kind]} (403 Forbidden): its RBAC needs `get` on them "
                    "(see docs/metric-templates.md)")
        return api_message(error)
    try:
        return api.MetricTemplate.model_validate({**body, "kind": kind.value})
    except ValidationError as error:
        problems = "; ".join(api.field_problems(error, ""))
        return f"{describe(kind, name, namespace)} is invalid: {problems}"


async def read_templates(
    kube: Kube, namespace: str, keys: list[TemplateKey]
) -> dict[TemplateKey, api.MetricTemplate | str | None]:
    """Every template a spec uses, read concurrently."""
    found = await asyncio.gather(*(read_template(kube, namespace, key) for key in keys))
    return dict(zip(keys, found, strict=True))


# (provider, the rollout's namespace, the field that named the provider's auth) -> credentials
CredentialsFor = Callable[[api.PrometheusProvider, str, str], Awaitable[PrometheusCredentials | None]]


async def measure_resolution(
    resolution: Resolution,
    *,
    default_address: str | None,
    credentials_for: CredentialsFor,
    flag: str,
    name: str,
    namespace: str,
    window: timedelta | None,
    now: datetime | None = None,
    make_provider: Callable[[api.PrometheusProvider, PrometheusCredentials | None], MetricProvider] = provider_for,
) -> dict[str, Measurement]:
    """Measure every metric of a resolved spec: an unresolved one is an Error with its reason; the
    others grouped by the Prometheus they ask (the template's, else the rollout's, else the
    operator's default), one provider per server."""
    analysis = resolution.spec.analysis
    assert analysis is not None
    results: dict[str, Measurement] = {}
    groups: dict[str, tuple[api.PrometheusProvider, list[str], str]] = {}
    fallback = analysis.prometheus
    if fallback is None and default_address is not None:
        fallback = api.PrometheusProvider(address=default_address)
    for metric in analysis.metrics:
        resolved = resolution.metrics[metric.name]
        if resolved.error is not None:
            results[metric.name] = Measurement.error(resolved.error)
            continue
        where = resolved.prometheus or fallback
        if where is None:
            results[metric.name] = Measurement.error(f"metric {metric.name!r}: {NO_PROMETHEUS}")
            continue
        field = "spec.analysis.prometheus.auth"
        if resolved.prometheus is not None and resolved.template is not None:
            field = f"{describe(resolved.template.kind, resolved.template.name, namespace)}: spec.prometheus.auth"
        groups.setdefault(where.model_dump_json(), (where, [], field))[1].append(metric.name)

    async def measure_group(where: api.PrometheusProvider, names: list[str], field: str) -> dict[str, Measurement]:
        try:
            credentials = await credentials_for(where, namespace, field)
        except InvalidCredentials as error:
            return {n: Measurement.error(str(error)) for n in names}
        provider = make_provider(where, credentials)
        try:
            plain = [resolution.metrics[n].metric for n in names if resolution.metrics[n].args is None]
            measured = await measure_all(
                provider, plain, flag=flag, name=name, namespace=namespace, interval=analysis.interval, window=window,
                now=now,
            )

            async def templated(metric_name: str) -> Measurement:
                resolved = resolution.metrics[metric_name]
                try:
                    render_query(
                        resolved.metric.query or "", flag=flag, name=name, namespace=namespace,
                        interval=analysis.interval, window=window, args=resolved.args,
                    )
                except ValueError as error:
                    template = resolved.template
                    source = f" (from {describe(template.kind, template.name, namespace)})" if template else ""
                    return Measurement.error(f"metric {metric_name!r}{source}: {error}")
                try:
                    # With a batching provider, rollouts of other flags using this template with
                    # the same args share one query grouped by flag (measure_query).
                    return await measure_query(
                        provider, resolved.metric.query or "", flag=flag, name=name, namespace=namespace,
                        interval=analysis.interval, window=window, args=resolved.args,
                    )
                except Exception as error:  # as measure_all: one metric's bug must not take the others down
                    return Measurement.error(f"metric {metric_name!r}: {type(error).__name__}: {error}")

            others = [n for n in names if resolution.metrics[n].args is not None]
            for metric_name, measurement in zip(
                others, await asyncio.gather(*(templated(n) for n in others)), strict=True
            ):
                measured[metric_name] = measurement
            return measured
        finally:
            await provider.aclose()

    for part in await asyncio.gather(*(measure_group(w, n, f) for w, n, f in groups.values())):
        results.update(part)
    return results


def templates_used(
    resolution: Resolution | None, measured: Mapping[str, Measurement] | None
) -> dict[str, api.TemplateUsed | None] | None:
    """Which template (and generation) each metric measured at this look used, for the engine to
    record on the evaluations it takes from them (engine.decide(templates=...))."""
    if resolution is None or not measured:
        return None
    return {name: resolved.template for name, resolved in resolution.metrics.items() if name in measured}
