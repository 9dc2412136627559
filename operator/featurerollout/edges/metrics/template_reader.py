"""The edge of metric templates: read them from the API at each look (measurer.py resolves them and
measures the resolved spec).

Templates are read with a plain GET each time (no watch, no cache), so that an edit takes effect at
the very next evaluation and the generation recorded in the status is the one used. That costs one
GET per distinct template per look; the operator needs only `get` on the two kinds.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from featurerollout import GROUP, VERSION, api
from featurerollout.edges.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.edges.metrics.templates import TemplateKey, describe

FORBIDDEN = 403
PLURALS: dict[api.TemplateKind, str] = {
    api.TemplateKind.METRIC_TEMPLATE: "metrictemplates",
    api.TemplateKind.CLUSTER_METRIC_TEMPLATE: "clustermetrictemplates",
}


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
