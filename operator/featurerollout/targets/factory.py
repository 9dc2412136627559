"""Picks the target module for a FeatureRollout's `spec.target`."""

from __future__ import annotations

from featurerollout.api import FeatureRolloutSpec
from featurerollout.kube import Kube
from featurerollout.targets.base import UNSUPPORTED_TARGET, Target, TargetError
from featurerollout.targets.configmap import ConfigMapTarget
from featurerollout.targets.featureflag import FeatureFlagTarget


def target_for(kube: Kube, namespace: str, spec: FeatureRolloutSpec) -> Target:
    """The target that `spec.target` names. Raises TargetError(UnsupportedTarget) for members
    this version of the operator accepts in the API but cannot drive yet."""
    target = spec.target
    if target.config_map is not None:
        return ConfigMapTarget(kube, namespace, target.config_map, spec.flag)
    if target.feature_flag is not None:
        return FeatureFlagTarget(kube, namespace, target.feature_flag, spec.flag)
    raise TargetError(
        UNSUPPORTED_TARGET,
        f"spec.target.{target.kind} is not supported by this version of the operator yet; "
        "use spec.target.configMap or spec.target.featureFlag",
    )
