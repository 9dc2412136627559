"""The real upstream HTTPRoute CRD (Gateway API standard channel, pinned) on the test's cluster.

The operator's HTTPRoute tests run on this CRD, not a trimmed copy, so Gateway API's own schema
and CEL rules apply to every write. This checks that the cluster really enforces them (on the
sandbox: that cel.py evaluates upstream's real-world CEL as kube-apiserver does).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.edges.targets.gateway import FETCHER, create_route, install_httproute_crd, route_manifest, shop_route
from tests.support.cluster import REPO, Cluster

pytestmark = pytest.mark.integration


def refused(cluster: Cluster, body: dict[str, Any]) -> str:
    """The API server's message for a route it refuses."""
    with pytest.raises(ApiException) as error:
        create_route(cluster, body)
    assert error.value.status == 422, error.value.body
    return str(error.value.body)


def backend(**extra: Any) -> dict[str, Any]:
    return {"rules": [{"backendRefs": [{"name": "checkout", **extra}]}]}


def test_the_pinned_crd_is_upstreams_standard_channel(cluster: Cluster) -> None:
    crd = install_httproute_crd(cluster)
    annotations = crd["metadata"]["annotations"]
    assert annotations["gateway.networking.k8s.io/bundle-version"] == FETCHER.VERSION
    assert annotations["gateway.networking.k8s.io/channel"] == "standard"
    assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == ["v1"]


def test_the_example_route_and_the_test_route_are_valid_and_defaulted(cluster: Cluster) -> None:
    install_httproute_crd(cluster)
    example = yaml.safe_load((REPO / "examples" / "gateway" / "shop-httproute.yaml").read_text())
    example["metadata"]["namespace"] = "default"
    created = create_route(cluster, example)
    ref = created["spec"]["rules"][1]["backendRefs"][0]
    assert (ref["group"], ref["kind"], ref["weight"]) == ("", "Service", 1)  # upstream's defaults
    create_route(cluster, shop_route("test-route"))


def test_upstream_schema_and_cel_rules_refuse_bad_routes(cluster: Cluster) -> None:
    install_httproute_crd(cluster)
    no_slash = route_manifest("no-slash", rules=[{"matches": [{"path": {"type": "PathPrefix", "value": "checkout"}}],
                                                  "backendRefs": [{"name": "checkout", "port": 80}]}])
    assert "value must be an absolute path and start with '/'" in refused(cluster, no_slash)
    assert "Must have port for Service reference" in refused(cluster, route_manifest("no-port", **backend()))
    too_heavy = route_manifest("too-heavy", **backend(port=80, weight=1_000_001))
    assert "1000000" in refused(cluster, too_heavy)
    timeouts = route_manifest("timeouts", rules=[{"backendRefs": [{"name": "checkout", "port": 80}],
                                                  "timeouts": {"request": "5s", "backendRequest": "10s"}}])
    assert "backendRequest timeout cannot be longer than request timeout" in refused(cluster, timeouts)
    rewrite = route_manifest("rewrite", rules=[{
        "matches": [{"path": {"type": "Exact", "value": "/x"}}],
        "filters": [{"type": "URLRewrite",
                     "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"}}}],
        "backendRefs": [{"name": "checkout", "port": 80}]}])
    assert "exactly one PathPrefix match must be specified" in refused(cluster, rewrite)


def test_parent_refs_are_compared_by_namespace_as_kube_apiserver_escapes_it(cluster: Cluster) -> None:
    """Upstream's rule reads `p1.__namespace__` (kube-apiserver's escaping of the CEL keyword
    `namespace`): two refs to same-named Gateways in different namespaces are different parents."""
    install_httproute_crd(cluster)
    parents = [{"name": "public", "namespace": "a", "sectionName": "https"}, {"name": "public", "namespace": "b"}]
    create_route(cluster, route_manifest("two-parents", parentRefs=parents, **backend(port=80)))
    same = copy.deepcopy(parents)
    same[1]["namespace"] = "a"
    message = refused(cluster, route_manifest("same-parent", parentRefs=same, **backend(port=80)))
    assert "sectionName must be specified when parentRefs includes 2 or more references to the same parent" in message
