"""Words and numbers that every CLI view of a rollout shows the same way (`status`, `list`).

Pure: an object body in, text out. Kept in one place so that `featurerollout status` and
`featurerollout list` never disagree about what stage a rollout is in or what its metrics said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    InvalidFeatureRollout,
    Metric,
    MetricResult,
    MetricStatus,
    Target,
    field_problems,
    parse_spec,
)
from featurerollout.core.messages import breach_brief


def stage_of(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """The current stage as `N/M` (1-based), as `kubectl get fro` and `status` show it."""
    stages = len(spec.stages)
    return f"{min(status.current_stage, stages - 1) + 1}/{stages}"


@dataclass(frozen=True)
class RolloutObject:
    """A FeatureRollout body read for display: its spec and status, or (spec None) why they could
    not be read: a spec that breaks the API's rules (only a CRD older than the operator lets one
    through), or a status this CLI does not understand."""

    namespace: str
    name: str
    spec: FeatureRolloutSpec | None
    invalid: str
    status: FeatureRolloutStatus


# The status fields this CLI knows, as the API spells them. A newer operator may write more: they
# are left out rather than refused, so that an older CLI still shows what it understands.
_STATUS_FIELDS = frozenset(field.alias or name for name, field in FeatureRolloutStatus.model_fields.items())


def read_object(body: dict[str, Any]) -> RolloutObject:
    """Parse a FeatureRollout as the API returned it, never raising on a bad spec or status."""
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name", "?"))
    namespace = str(metadata.get("namespace", "default"))
    raw_status = body.get("status") or {}
    try:
        status = FeatureRolloutStatus.model_validate({k: v for k, v in raw_status.items() if k in _STATUS_FIELDS})
    except ValidationError as error:
        problems = "; ".join(field_problems(error, "status"))
        return RolloutObject(namespace, name, None, f"status not understood by this CLI (is it older than the "
                             f"operator?): {problems}", FeatureRolloutStatus())
    try:
        spec = parse_spec(body.get("spec") or {}, name)
    except InvalidFeatureRollout as invalid:
        return RolloutObject(namespace, name, None, f"invalid spec: {invalid}", status)
    return RolloutObject(namespace, name, spec, "", status)


def target_brief(target: Target) -> str:
    """Where the flag lives, short enough for a table column: `configMap/feature-flags`,
    `featureFlag/flags`, `httpRoute/shop#0`, `webhook/flags.example.com`."""
    if target.config_map is not None:
        return f"configMap/{target.config_map.name}"
    if target.feature_flag is not None:
        return f"featureFlag/{target.feature_flag.name}"
    if target.http_route is not None:
        return f"httpRoute/{target.http_route.name}#{target.http_route.rule}"
    assert target.webhook is not None  # the models allow exactly one member
    host = target.webhook.url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]  # no user:password@
    return f"webhook/{host}"


# Worst first: the order in which a verdict names its metrics.
_SEVERITY = (MetricResult.FAILED, MetricResult.ERROR, MetricResult.NO_DATA)


def _one_metric(metric: Metric, observed: MetricStatus) -> str:
    if observed.result == MetricResult.FAILED and observed.value is not None:
        return f"{metric.name} {breach_brief(metric, observed.value)}"
    if observed.result == MetricResult.ERROR and observed.message:
        return f"{metric.name} ({observed.message})"
    return metric.name


def last_verdict(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """The last evaluation of the rollout's metrics in one phrase: `Passed`,
    `Failed: error-rate 0.12 > 0.05`, `NoData: latency`, or several of those joined by `; `, worst
    first. `-` without analysis or before the first evaluation."""
    if spec.analysis is None:
        return "-"
    known = {m.name: m for m in status.metrics}
    evaluated = [(metric, known[metric.name]) for metric in spec.analysis.metrics if metric.name in known]
    if not evaluated:
        return "-"
    parts = []
    for result in _SEVERITY:
        names = [_one_metric(metric, observed) for metric, observed in evaluated if observed.result == result]
        if names:
            parts.append(f"{result.value}: {', '.join(names)}")
    return "; ".join(parts) or MetricResult.PASSED.value


def human_duration(delta: timedelta) -> str:
    """A duration as `kubectl get` shows ages, exact while short and rounded as it grows:
    `45s`, `3m12s`, `1h12m`, `3d4h`."""
    total = max(0, int(delta.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{seconds}s" if seconds else f"{minutes}m"
    return f"{seconds}s"
