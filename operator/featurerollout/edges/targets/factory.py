"""Picks the target module for a FeatureRollout's `spec.target`."""

from __future__ import annotations

from featurerollout.api import FeatureRolloutSpec
from featurerollout.edges.kube import Kube
from featurerollout.edges.targets.base import Target
from featurerollout.edges.targets.configmap import ConfigMapTarget
from featurerollout.edges.targets.featureflag import FeatureFlagTarget
from featurerollout.edges.targets.httproute import HTTPRouteTarget
from featurerollout.edges.targets.webhook import WebhookClients, WebhookTarget


def target_for(
    kube: Kube, namespace: str, spec: FeatureRolloutSpec, *, rollout: str = "",
    webhooks: WebhookClients | None = None,
) -> Target:
    """The target that `spec.target` names, for the rollout `rollout` in `namespace`. `webhooks`
    are the operator's pooled HTTP clients for webhook targets (a caller that never applies a
    webhook target, such as `featurerollout status`, may leave them out)."""
    target = spec.target
    if target.config_map is not None:
        return ConfigMapTarget(kube, namespace, target.config_map, spec.flag)
    if target.feature_flag is not None:
        return FeatureFlagTarget(kube, namespace, target.feature_flag, spec.flag)
    if target.http_route is not None:
        return HTTPRouteTarget(kube, namespace, target.http_route)
    assert target.webhook is not None  # the models allow exactly one member
    clients = webhooks if webhooks is not None else WebhookClients()
    return WebhookTarget(kube, clients, namespace, rollout, target.webhook, spec.flag)
