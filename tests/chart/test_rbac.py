"""The chart's RBAC, checked against what a real operator does (tier 2 + 4).

The real `featurerollout run` (a subprocess, with the arguments the chart's Deployment gives it)
drives four rollouts against the cluster, which exercise every API call the operator makes: a
configMap, a featureFlag and an httpRoute target (each to Succeeded), and a rollout whose Prometheus
credentials come from a Secret. Every request the operator made is then read from the sandbox's
request log, reduced to (apiGroup, resource[/subresource], verb, namespace), and checked against the
rules that `helm template` grants the operator's ServiceAccount:

- complete: every request is allowed;
- minimal: removing any one rule, or any one verb of a rule, denies at least one request.

The sandbox enforces no RBAC itself (docs/cluster.md), so this is the check. Requests without a
resource (`/api`, `/apis`, `/version`: discovery) are granted to every authenticated user by
Kubernetes' default `system:discovery` ClusterRole, so the chart does not grant them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edges.targets.gateway import create_route, httproute_crd_path, shop_route
from tests.support.cluster import Cluster, OperatorFactory, rollout_manifest, start_sandbox, wait_until
from tests.support.paths import FIXTURES
from tests.support.secrets import USABLE

from .chart_support import HELM as HELM_BINARY
from .chart_support import NAMESPACE, RELEASE, Access, Grants, Manifest, grants_for, of_kind, render, require_tool

pytestmark = pytest.mark.integration

FEATUREFLAG_CRD = FIXTURES / "crds" / "openfeature-featureflags.yaml"
GROUP, VERSION, PLURAL = "featurerollout.io", "v1alpha1", "featurerollouts"
TEST_USER_AGENT = "featurerollout-chart-test"
# The operator's own client (featurerollout/VERSION (identity)) and Kopf's.
OPERATOR_USER_AGENTS = ("featurerollout/", "kopf/")
DISCOVERY_PATHS = ("/api", "/apis", "/version")
ONE_SECOND_STAGES = [{"weight": 50, "duration": "1s"}, {"weight": 100}]

# What the operator must have done for this test to prove anything (each in the namespace `default`
# or, for Kopf's watches, wherever the mode puts them): if the operator stops making one of these
# calls, this list and the chart's rules should both shrink.
EXERCISED = {
    ("featurerollout.io", "featurerollouts", "list"),
    ("featurerollout.io", "featurerollouts", "watch"),
    ("featurerollout.io", "featurerollouts", "get"),
    ("featurerollout.io", "featurerollouts/status", "patch"),
    ("", "configmaps", "get"),
    ("", "configmaps", "update"),
    ("core.openfeature.dev", "featureflags", "get"),
    ("core.openfeature.dev", "featureflags", "update"),
    ("gateway.networking.k8s.io", "httproutes", "get"),
    ("gateway.networking.k8s.io", "httproutes", "update"),
    ("", "secrets", "get"),
    ("", "events", "create"),
    ("featurerollout.io", "metrictemplates", "get"),
    ("featurerollout.io", "clustermetrictemplates", "get"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    # Leader election (the chart runs it): the first replica creates the Lease, then renews it.
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}

# name -> (chart --set values, extra accesses expected in this mode)
# Kopf observes namespaces whenever it is given namespaces, exact names included (Kopf 1.45).
NAMESPACE_OBSERVATION = {("", "namespaces", "list"), ("", "namespaces", "watch")}
MODES: dict[str, tuple[list[str], set[tuple[str, str, str]]]] = {
    "all-namespaces": ([], set()),
    "namespaced": (["watch.namespaces={default}"], NAMESPACE_OBSERVATION),
    "glob": (["watch.namespaces={defa*}"], NAMESPACE_OBSERVATION),
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = start_sandbox(tmp_path, "--crd", str(FEATUREFLAG_CRD), "--crd", str(httproute_crd_path()))
    # The test's own client must not pass for the operator in the request log.
    cluster.api.user_agent = TEST_USER_AGENT
    # The release's namespace, where the chart's leader election keeps its Lease.
    cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        yield cluster
    finally:
        cluster.api.close()
        cluster.process.stop()


# `operator` is the shared fixture (tests/support/cluster_fixtures.py); it binds to this
# module's `cluster`, which also serves the OpenFeature CRD.


def operator_args(manifests: list[Manifest]) -> list[str]:
    """The chart's container args, minus what cannot work on a test machine (fixed ports, and
    `--deny-loopback`: the test's Prometheus listens on loopback) and minus `run`, which the test's
    operator factory supplies."""
    (deployment,) = of_kind(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    assert args[0] == "run"
    return [a for a in args[1:] if not a.startswith(("--metrics-port", "--liveness", "--deny-loopback"))]


TARGET_ROLLOUTS = ("via-configmap", "via-featureflag", "via-httproute")


def make_targets(cluster: Cluster) -> None:
    """One object of each target kind that reads back (a flagd ConfigMap, a FeatureFlag, an
    HTTPRoute), the Prometheus credentials Secret, and a rollout to Succeeded on each target."""
    cluster.core.create_namespaced_config_map(
        "default", {"metadata": {"name": "feature-flags"}, "data": {"flags.flagd.json": '{"flags": {}}'}})
    cluster.custom.create_namespaced_custom_object(
        "core.openfeature.dev", "v1beta1", "default", "featureflags",
        {"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
         "metadata": {"name": "flags"}, "spec": {"flagSpec": {"flags": {}}}})
    create_route(cluster, shop_route())
    cluster.core.create_namespaced_secret(
        "default", {"metadata": {"name": "prometheus-auth", "labels": USABLE}, "stringData": {"token": "t0ken"}})
    for body in (
        rollout_manifest("via-configmap", flag="via-configmap", target={"configMap": {"name": "feature-flags"}},
                         stages=ONE_SECOND_STAGES),
        rollout_manifest("via-featureflag", flag="via-featureflag", target={"featureFlag": {"name": "flags"}},
                         stages=ONE_SECOND_STAGES),
        rollout_manifest("via-httproute", flag="via-httproute", stages=ONE_SECOND_STAGES, target={
            "httpRoute": {"name": "shop", "stableBackend": "checkout", "featureBackend": "checkout-new"}}),
    ):
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)


TEMPLATED_ROLLOUT = "via-templates"


def make_templated(cluster: Cluster, prometheus_url: str, auth: bool = False) -> None:
    """A MetricTemplate (in `default`) and a ClusterMetricTemplate, and a rollout whose two metrics use
    them: the operator reads each with a GET at every look. The ClusterMetricTemplate outlives the
    namespace's emptying between tests, so an old one is replaced."""
    prometheus: dict[str, Any] = {"address": prometheus_url}
    if auth:
        prometheus["auth"] = {"secretName": "prometheus-auth"}
    template = {"query": "vector(0) * {{args.scale}}", "args": [{"name": "scale", "value": "1"}], "max": 0.5,
                "prometheus": prometheus}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", "metrictemplates", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MetricTemplate", "metadata": {"name": "zero"},
        "spec": template})
    try:
        cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", "zero-everywhere")
    except Exception as error:
        if getattr(error, "status", None) != 404:
            raise
    cluster.custom.create_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterMetricTemplate", "metadata": {"name": "zero-everywhere"},
        "spec": template})
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, rollout_manifest(
        TEMPLATED_ROLLOUT, flag=TEMPLATED_ROLLOUT, target={"configMap": {"name": "feature-flags"}},
        stages=ONE_SECOND_STAGES,
        analysis={"interval": "1s", "consecutiveErrorLimit": 1000, "metrics": [
            {"name": "namespaced", "templateRef": {"name": "zero"}, "args": {"scale": "2"}},
            {"name": "clusterwide", "templateRef": {"name": "zero-everywhere", "kind": "ClusterMetricTemplate"}},
        ]}))


def make_objects(cluster: Cluster) -> None:
    make_targets(cluster)
    # Nothing listens there: the templates are read, the measurement fails, nothing promotes.
    make_templated(cluster, "http://127.0.0.1:9")
    rollouts: list[dict[str, Any]] = [
        rollout_manifest(
            "with-auth", flag="with-auth", target={"configMap": {"name": "feature-flags"}},
            stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}],
            analysis={
                "interval": "1s",
                # Nothing listens there: the measurement fails, after the Secret was read.
                "prometheus": {"address": "http://127.0.0.1:9", "auth": {"secretName": "prometheus-auth"}},
                "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.01}],
            },
        ),
    ]
    for body in rollouts:
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)


def phase(cluster: Cluster, name: str) -> str | None:
    body = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return (body.get("status") or {}).get("phase")


def operator_requests(cluster: Cluster) -> list[dict[str, Any]]:
    return [r for r in cluster.control.requests() if str(r["user_agent"]).startswith(OPERATOR_USER_AGENTS)]


def access_of(record: dict[str, Any]) -> Access:
    resource = record["resource"] + (f"/{record['subresource']}" if record["subresource"] else "")
    return Access(record["group"] or "", resource, record["verb"], record["namespace"] or "")


def denied(grants: Grants, accesses: set[Access]) -> list[str]:
    return sorted(str(a) for a in accesses if not grants.allows(a))


def without_verb(grants: Grants, scope: str, index: int, verb: str) -> Grants:
    changed = copy.deepcopy(grants)
    rules = changed.cluster_rules if not scope else changed.namespaced_rules[scope]
    rules[index]["verbs"] = [v for v in rules[index]["verbs"] if v != verb]
    return changed


@pytest.mark.parametrize("mode", list(MODES))
def test_rbac_allows_every_request_of_a_real_operator_and_nothing_more(
    mode: str, cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    require_tool(HELM_BINARY)
    sets, extra_expected = MODES[mode]
    manifests = render(tmp_path / "helm", sets=sets)
    grants = grants_for(manifests, RELEASE, NAMESPACE)

    operator.standalone = False  # as the chart runs it: leader election on a Lease
    operator(*operator_args(manifests))
    make_objects(cluster)
    for name in TARGET_ROLLOUTS:
        wait_until(lambda name=name: phase(cluster, name) == "Succeeded", 30, f"{name} to succeed")
    wait_until(lambda: any(r["resource"] == "secrets" for r in operator_requests(cluster)), 30,
               "the operator to read the Prometheus Secret")
    for kind in ("metrictemplates", "clustermetrictemplates"):
        wait_until(lambda kind=kind: any(r["resource"] == kind for r in operator_requests(cluster)), 30,
                   f"the operator to read {kind}")
    wait_until(lambda: any(r["resource"] == "leases" and r["verb"] == "update" for r in operator_requests(cluster)),
               30, "the leader to renew its Lease")

    records = operator_requests(cluster)
    discovery = {r["path"] for r in records if not r["resource"]}
    assert all(path.startswith(DISCOVERY_PATHS) for path in discovery), discovery
    accesses = {access_of(r) for r in records if r["resource"]}
    print("the operator's requests:\n  " + "\n  ".join(sorted(map(str, accesses))))

    # The run exercised every call the operator makes (else the checks below prove less than they claim).
    used = {(a.group, a.resource, a.verb) for a in accesses}
    assert used == EXERCISED | extra_expected, f"unexpected: {used - EXERCISED - extra_expected}, " \
                                               f"missing: {(EXERCISED | extra_expected) - used}"

    # Complete: the chart allows every request the operator made.
    assert not denied(grants, accesses), f"the chart's RBAC denies: {denied(grants, accesses)}"

    # Minimal: each rule, and each verb of each rule, is needed by some request.
    scopes = {"": grants.cluster_rules, **grants.namespaced_rules}
    for scope, rules in scopes.items():
        for index, rule in enumerate(rules):
            where = scope or "cluster"
            assert denied(grants.without_rule(scope, index), accesses), f"rule not needed ({where}): {rule}"
            for verb in rule["verbs"]:
                assert denied(without_verb(grants, scope, index, verb), accesses), (
                    f"verb {verb!r} not needed ({where}): {rule}")
