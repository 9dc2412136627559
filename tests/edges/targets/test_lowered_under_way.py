"""Issue 19: a flag switched off by hand WHILE a look is under way (after the look read the target,
while it measured and decided) is not raised by that look's stage step: each target that reads
back compares, inside its read-modify-write, what it holds now with what the look read. Real
targets on the API server; the person's edit lands between the read and the write, as it would."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.edges.targets.gateway import (
    GROUP,
    PLURAL,
    VERSION,
    create_route,
    get_route,
    install_httproute_crd,
    shop_route,
)
from tests.process.rollouts.test_operator_promises import OF_GROUP, OF_PLURAL, OF_VERSION, install_openfeature_crd
from tests.support.cluster import Cluster
from tests.support.rollouts import KEY, make_configmap

from featurerollout.api import LOWERED_BY_HAND, ConfigMapTarget, FeatureFlagTarget, HTTPRouteTarget
from featurerollout.edges.kube import Kube
from featurerollout.edges.targets.base import Target, TargetError, check_not_lowered
from featurerollout.edges.targets.configmap import ConfigMapTarget as ConfigMaps
from featurerollout.edges.targets.featureflag import FeatureFlagTarget as FeatureFlags
from featurerollout.edges.targets.httproute import HTTPRouteTarget as Routes

pytestmark = pytest.mark.integration


def test_the_rule() -> None:
    check_not_lowered("here", "f", read=50, now=50, weight=100)  # unchanged since the read: may raise
    check_not_lowered("here", "f", read=50, now=0, weight=0)  # lowering further is never refused
    check_not_lowered("here", "f", read=None, now=0, weight=100)  # nothing read (a webhook): no check
    check_not_lowered("here", "f", read=0, now=None, weight=10)  # a first write onto no entry
    check_not_lowered("here", "f", read=50, now=80, weight=100)  # raised meanwhile: the engine's drift
    for now in (0.0, None, 10.0):
        with pytest.raises(TargetError) as refused:
            check_not_lowered("ConfigMap default/x", "f", read=50, now=now, weight=100)
        assert refused.value.reason == LOWERED_BY_HAND
        assert f"was lowered to {now or 0:g}% outside the operator" in refused.value.message


def configmap(cluster: Cluster, kube: Kube) -> tuple[Target, Callable[[], None], Callable[[], str]]:
    make_configmap(cluster, doc="")

    def switch_off() -> None:
        body = cluster.core.read_namespaced_config_map("feature-flags", "default")
        document = json.loads(body.data[KEY])
        document["flags"]["new-checkout"]["state"] = "DISABLED"
        body.data[KEY] = json.dumps(document)
        cluster.core.replace_namespaced_config_map("feature-flags", "default", body)

    def version() -> str:
        return str(cluster.core.read_namespaced_config_map("feature-flags", "default").metadata.resource_version)

    return ConfigMaps(kube, "default", ConfigMapTarget(name="feature-flags"), "new-checkout"), switch_off, version


def featureflag(cluster: Cluster, kube: Kube) -> tuple[Target, Callable[[], None], Callable[[], str]]:
    install_openfeature_crd(cluster)
    cluster.custom.create_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL, {
        "apiVersion": f"{OF_GROUP}/{OF_VERSION}", "kind": "FeatureFlag",
        "metadata": {"name": "feature-flags"}, "spec": {"flagSpec": {"flags": {}}},
    })

    def read() -> dict[str, Any]:
        body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
            OF_GROUP, OF_VERSION, "default", OF_PLURAL, "feature-flags")
        return body

    def switch_off() -> None:
        body = read()
        del body["spec"]["flagSpec"]["flags"]["new-checkout"]  # the entry removed
        cluster.custom.replace_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL,
                                                        "feature-flags", body)

    target = FeatureFlags(kube, "default", FeatureFlagTarget(name="feature-flags"), "new-checkout")
    return target, switch_off, lambda: str(read()["metadata"]["resourceVersion"])


def httproute(cluster: Cluster, kube: Kube) -> tuple[Target, Callable[[], None], Callable[[], str]]:
    install_httproute_crd(cluster)
    create_route(cluster, shop_route())

    def switch_off() -> None:
        route = get_route(cluster)
        for ref in route["spec"]["rules"][0]["backendRefs"]:
            if ref["name"] in ("checkout-new", "checkout"):
                ref["weight"] = {"checkout-new": 0, "checkout": 100}[ref["name"]]
        cluster.custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "shop", route)

    spec = HTTPRouteTarget(name="shop", rule=0, stableBackend="checkout", featureBackend="checkout-new")
    return Routes(kube, "default", spec), switch_off, lambda: str(get_route(cluster)["metadata"]["resourceVersion"])


@pytest.mark.parametrize("make", [configmap, featureflag, httproute], ids=["configMap", "featureFlag", "httpRoute"])
async def test_a_stage_step_does_not_raise_a_flag_switched_off_since_the_look_read_it(
    cluster: Cluster, kube: Kube, make: Callable[[Cluster, Kube], tuple[Target, Callable[[], None], Callable[[], str]]]
) -> None:
    target, switch_off, version = make(cluster, kube)
    assert await target.apply(50)
    read = (await target.holding()).weight  # the look reads the target ...
    assert read == 50
    switch_off()  # ... a person switches the feature off while it measures and decides ...
    before = version()
    target.expect(read)
    with pytest.raises(TargetError) as refused:
        await target.apply(100)  # ... and its stage step must not undo that
    assert refused.value.reason == LOWERED_BY_HAND
    assert "was lowered to 0% outside the operator" in refused.value.message
    assert version() == before, "the target was written"
    assert (await target.holding()).weight in (0, None)
    # Nothing stands in the way of a lower write (an abort), nor of a raise from what was read now.
    target.expect((await target.holding()).weight or 0.0)
    assert await target.apply(10)
    assert (await target.holding()).weight == 10


def test_an_entry_with_no_split_reads_as_its_default_variant() -> None:
    """A person often switches a flag by leaving it without targeting: `defaultVariant: on` exposes
    everyone (more than any stage below 100%: a raise, put down), `off` no one (a switch-off)."""
    from featurerollout.edges.targets.flagd import weight_of

    variants = {"on": True, "off": False}
    assert weight_of({"state": "ENABLED", "variants": variants, "defaultVariant": "on"}) == 100
    assert weight_of({"state": "ENABLED", "variants": variants, "defaultVariant": "off", "targeting": {}}) == 0
    assert weight_of({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}) is None  # not ours to read
