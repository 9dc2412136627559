"""Real traffic follows the HTTPRoute weights, on a real cluster with a Gateway controller: opt-in.

No Gateway API implementation can run on the project's own machines (README, "httpRoute"), so
this is where the traffic split itself is proven:

    FEATUREROLLOUT_E2E_KUBECONFIG=~/.kube/config \\
    FEATUREROLLOUT_E2E_GATEWAY=gateways/public \\
    FEATUREROLLOUT_E2E_GATEWAY_URL=http://localhost:8080 \\
    .venv/bin/pytest tests/e2e/test_real_gateway.py -m e2e

- the cluster has the Gateway API CRDs and a running controller (Envoy Gateway, Contour, Istio,
  Traefik, NGINX Gateway Fabric...) serving the Gateway `NAMESPACE/NAME` with an HTTP listener
  that allows routes from all namespaces;
- `FEATUREROLLOUT_E2E_GATEWAY_URL` reaches that listener from where the test runs (a LoadBalancer
  address, or `kubectl port-forward`);
- the cluster can pull `registry.k8s.io/e2e-test-images/agnhost:2.53` (it answers with its pod name).

In a namespace of its own, it deploys two backends (`stable`, `feature`), an HTTPRoute for a
unique hostname, and a FeatureRollout on it; at a stage of 25% it sends requests through the
Gateway and checks the share that reached `feature` (a binomial bound, not a point), then
aborts and checks that every request reaches `stable`.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.e2e.test_real_cluster import GROUP, PLURAL, VERSION, _status
from tests.e2e.test_real_cluster import cluster as cluster  # the fixture: CRD, namespace, operator
from tests.support.cluster import wait_until

GATEWAY = os.environ.get("FEATUREROLLOUT_E2E_GATEWAY", "")
GATEWAY_URL = os.environ.get("FEATUREROLLOUT_E2E_GATEWAY_URL", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (os.environ.get("FEATUREROLLOUT_E2E_KUBECONFIG") and GATEWAY and GATEWAY_URL),
        reason="set FEATUREROLLOUT_E2E_KUBECONFIG, FEATUREROLLOUT_E2E_GATEWAY (namespace/name) and "
        "FEATUREROLLOUT_E2E_GATEWAY_URL to run against a real Gateway",
    ),
]
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
REQUESTS = 400


def backend(apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str, name: str) -> None:
    labels = {"app": name}
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "agnhost", "image": IMAGE, "args": ["serve-hostname", "--http",
                                                                                  "--port", "8080"],
                                     "ports": [{"containerPort": 8080}],
                                     "readinessProbe": {"httpGet": {"path": "/", "port": 8080}}}]}}},
    })
    core.create_namespaced_service(namespace, {
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    })


def feature_share(host: str) -> float:
    """The share of REQUESTS through the Gateway that the `feature` backend answered."""
    feature = 0
    with httpx.Client(base_url=GATEWAY_URL, timeout=10, headers={"Host": host}) as http:
        for _ in range(REQUESTS):
            answer = http.get("/")
            answer.raise_for_status()
            feature += answer.text.startswith("feature-")
    return feature / REQUESTS


def within_binomial(share: float, p: float) -> bool:
    """`share` is within 4.5 standard deviations of p (a false alarm about once in 150,000 runs)."""
    sigma = math.sqrt(p * (1 - p) / REQUESTS)
    return abs(share - p) <= 4.5 * sigma + 1e-9


@pytest.fixture
def routed(cluster: tuple[client.ApiClient, str]) -> Iterator[tuple[client.ApiClient, str, str]]:
    api, namespace = cluster
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for name in ("stable", "feature"):
        backend(apps, core, namespace, name)
    for name in ("stable", "feature"):
        wait_until(lambda name=name: (apps.read_namespaced_deployment(name, namespace).status.ready_replicas or 0)
                   >= 1, 300, f"the {name} backend to be ready")
    gateway_namespace, gateway_name = GATEWAY.split("/", 1)
    host = f"{namespace}.featurerollout.test"
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "split"},
        "spec": {"parentRefs": [{"name": gateway_name, "namespace": gateway_namespace}], "hostnames": [host],
                 "rules": [{"backendRefs": [{"name": "stable", "port": 80, "weight": 100},
                                            {"name": "feature", "port": 80, "weight": 0}]}]},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    wait_until(lambda: feature_share(host) == 0.0, 120, "the Gateway to serve the route")
    yield api, namespace, host


def test_traffic_follows_the_weights_and_an_abort_sends_it_all_back(
    routed: tuple[client.ApiClient, str, str], tmp_path: Path
) -> None:
    api, namespace, host = routed
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FeatureRollout", "metadata": {"name": "split"},
        "spec": {"flag": "split", "stages": [{"weight": 25, "duration": "1h"}, {"weight": 100}],
                 "target": {"httpRoute": {"name": "split", "stableBackend": "stable", "featureBackend": "feature"}}},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_until(lambda: _status(api, namespace, "split").get("currentWeight") == 25, 60, "25%")
    # The controller programs the data plane a little after the route changes: wait for a share
    # within the bound, then check it holds on a fresh sample.
    wait_until(lambda: within_binomial(feature_share(host), 0.25), 120, "about 25% of requests on feature")
    assert within_binomial(feature_share(host), 0.25)
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "split",
        {"metadata": {"annotations": {"featurerollout.io/request": f'{{"id": "{uuid.uuid4().hex}", '
                                                                   '"action": "abort"}'}}})
    wait_until(lambda: _status(api, namespace, "split").get("phase") == "RolledBack", 60, "RolledBack")
    wait_until(lambda: feature_share(host) == 0.0, 120, "every request back on stable")
