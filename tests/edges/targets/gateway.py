"""The real Gateway API HTTPRoute CRD on the test's cluster, and HTTPRoute helpers.

The CRD is upstream's standard channel, pinned in scripts/fetch_gateway_api_crd.py and fetched at
test time into .cache/ (never committed). It is installed through the apiextensions API, as on any
API server, not through a sandbox-only option.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.support.cluster import REPO, Cluster, wait_until
from tests.support.watching import values_seen

from featurerollout.edges.targets.base import OWNERS_ANNOTATION

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
FETCH_SCRIPT = REPO / "scripts" / "fetch_gateway_api_crd.py"


def _fetcher() -> Any:
    spec = importlib.util.spec_from_file_location("fetch_gateway_api_crd", FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fetch_gateway_api_crd", module)
    spec.loader.exec_module(module)
    return module


FETCHER = _fetcher()


def httproute_crd_path() -> Path:
    """The pinned upstream CRD file; skips the test when it cannot be fetched (fails under CI)."""
    try:
        return Path(FETCHER.fetch())
    except FETCHER.FetchError as error:
        if os.environ.get("CI"):
            pytest.fail(f"the Gateway API CRD is needed: {error}", pytrace=False)
        pytest.skip(f"the Gateway API CRD could not be fetched: {error}")


def install_httproute_crd(cluster: Cluster) -> dict[str, Any]:
    """Create the upstream HTTPRoute CRD through the API and wait until HTTPRoutes are served."""
    body = yaml.safe_load(httproute_crd_path().read_text(encoding="utf-8"))
    crds = client.ApiextensionsV1Api(cluster.api)
    try:
        crds.create_custom_resource_definition(body)
    except client.ApiException as error:
        if error.status != 409:
            raise
        # The real tier's session serves the trimmed fixture CRD: replace it with upstream's for this
        # test (the session puts its own back before the next test).
        current = crds.read_custom_resource_definition(body["metadata"]["name"])
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        crds.replace_custom_resource_definition(body["metadata"]["name"], body)
        # The server validates with the new schema a moment later: wait until upstream's own rule
        # (a path prefix must be absolute) refuses a route, in a dry run.
        wait_until(lambda: _refuses_relative_paths(cluster), 30, "the upstream HTTPRoute schema in force")
    wait_until(
        lambda: cluster.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL) is not None,
        30, "HTTPRoutes to be served",
    )
    return dict(body)


def _refuses_relative_paths(cluster: Cluster) -> bool:
    probe = route_manifest("schema-probe", rules=[{"matches": [{"path": {"type": "PathPrefix", "value": "x"}}],
                                                   "backendRefs": [{"name": "checkout", "port": 80}]}])
    try:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, probe, dry_run="All")
    except client.ApiException as error:
        return bool(error.status == 422)
    return False


def route_manifest(name: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default", "annotations": {"team": "shop"}},
            "spec": spec}


def shop_route(name: str = "shop") -> dict[str, Any]:
    """A route with two rules and three backendRefs in the first (the third one is not ours),
    with matches, filters, hostnames and parentRefs that the operator must leave alone."""
    return route_manifest(
        name,
        parentRefs=[{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        hostnames=["shop.example.com"],
        rules=[
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/checkout"}}],
                "filters": [{"type": "RequestHeaderModifier",
                             "requestHeaderModifier": {"add": [{"name": "x-route", "value": "checkout"}]}}],
                "backendRefs": [
                    {"name": "checkout", "port": 80, "weight": 100},
                    {"name": "checkout-new", "port": 80, "weight": 0},
                    {"name": "checkout-audit", "port": 8080, "weight": 7},
                ],
            },
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"name": "catalog", "port": 80, "weight": 1}],
            },
        ],
    )


def create_route(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    return created


def get_route(cluster: Cluster, name: str = "shop") -> dict[str, Any]:
    body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return body


def pair(route: dict[str, Any], rule: int = 0, feature: str = "checkout-new",
         stable: str = "checkout") -> tuple[int, int]:
    refs = {r["name"]: r for r in route["spec"]["rules"][rule]["backendRefs"]}
    return int(refs[feature]["weight"]), int(refs[stable]["weight"])


def without_pair_weights(route: dict[str, Any], rule: int = 0, names: tuple[str, ...] = ("checkout-new", "checkout")
                         ) -> dict[str, Any]:
    """The route's spec and annotations with the pair's weights blanked, and without the operator's
    own owner marker (one FeatureRollout per split, README): what must never change."""
    annotations = {k: v for k, v in (route["metadata"].get("annotations") or {}).items()
                   if k != OWNERS_ANNOTATION} or None
    copied = copy.deepcopy({"spec": route["spec"], "annotations": annotations,
                            "labels": route["metadata"].get("labels")})
    for ref in copied["spec"]["rules"][rule]["backendRefs"]:
        if ref["name"] in names:
            ref["weight"] = None
    return copied


@contextmanager
def pairs_seen(cluster: Cluster, name: str = "shop") -> Iterator[list[tuple[int, int]]]:
    """Every (feature, stable) weight pair the route held, in the order the API server stored them."""
    start = get_route(cluster, name)["metadata"]["resourceVersion"]
    with values_seen(cluster.custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, name=name,
                     start=start, value=pair, timeout=120) as seen:
        yield seen
