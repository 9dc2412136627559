"""The chart's RBAC enforced by the real kube-apiserver (tier 3 + 4).

The operator runs with exactly the chart's permissions: the chart's ServiceAccount, Role and
ClusterRole (rendered by the real helm) applied to the real server, and a token for that
ServiceAccount from the TokenRequest API. With `--authorization-mode=RBAC`, every request it makes
is decided by the real authorizer. It goes through a whole rollout on each target that reads back
(configMap, featureFlag, httpRoute on the upstream Gateway API CRD), analysis with
credentials from a Secret against a real Prometheus (also through a MetricTemplate and a
ClusterMetricTemplate: the namespaced install reads the cluster-scoped one through its ClusterRole),
an automatic rollback, manual control from
the CLI, and a restart:

- complete: the audit log holds no 403 for the operator, and every rollout ends as it should;
- minimal: for each rule, and each verb of each rule, the Role/ClusterRole is replaced on the real
  server without it, and the real authorizer (SubjectAccessReview) then denies at least one
  request that the operator really made (read from the server's audit log).

Both install modes: cluster-wide, and `watch.namespaces={default}` (a Role per namespace).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.edges.targets.gateway import install_httproute_crd
from tests.support.cluster import (
    Cluster,
    OperatorFactory,
    featurerollout_command,
    real_fixture,
    rollout_manifest,
    wait_until,
)
from tests.support.fixtures import PrometheusFactory
from tests.support.real_server import require_real
from tools import real_apiserver

from .chart_support import HELM as HELM_BINARY
from .chart_support import NAMESPACE, RELEASE, Access, grants_for, of_kind, render, require_tool
from .test_rbac import (
    GROUP,
    PLURAL,
    TARGET_ROLLOUTS,
    TEMPLATED_ROLLOUT,
    VERSION,
    make_targets,
    make_templated,
    operator_args,
)

pytestmark = pytest.mark.integration

SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
MODES = {"all-namespaces": [], "namespaced": ["watch.namespaces={default}"]}
ONE_SECOND_STAGES = [{"weight": 50, "duration": "1s"}, {"weight": 100}]


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The session's real kube-apiserver, emptied, with no RBAC of the chart's left from another mode."""
    require_real()
    kubeconfig: Path = request.getfixturevalue("real_apiserver")
    for cluster in real_fixture(kubeconfig):
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        selector = f"app.kubernetes.io/instance={RELEASE}"
        rbac.delete_collection_cluster_role_binding(label_selector=selector)
        rbac.delete_collection_cluster_role(label_selector=selector)
        yield cluster


def audit_records(admin_kubeconfig: Path) -> list[dict[str, Any]]:
    log = admin_kubeconfig.parent / "audit.log"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in events if e["user"]["username"] == SERVICE_ACCOUNT and e.get("stage") == "ResponseComplete"]


def access_of(event: dict[str, Any]) -> Access | None:
    ref = event.get("objectRef")
    if ref is None:  # discovery (/api, /apis, /version): granted to everyone by system:discovery
        return None
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return Access(ref.get("apiGroup", ""), resource, event["verb"], ref.get("namespace", ""))


def allowed(api: client.ApiClient, access: Access) -> bool:
    """The real authorizer's answer for the operator's ServiceAccount."""
    resource, _, subresource = access.resource.partition("/")
    review = client.AuthorizationV1Api(api).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": SERVICE_ACCOUNT,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"],
            "resourceAttributes": {"group": access.group, "resource": resource, "subresource": subresource,
                                   "verb": access.verb, "namespace": access.namespace},
        },
    })
    return bool(review.status.allowed)


def cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*featurerollout_command(*args), "--kubeconfig", str(kubeconfig)], capture_output=True,
                          text=True, timeout=60)


def phase(cluster: Cluster, name: str) -> str | None:
    body = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return (body.get("status") or {}).get("phase")


def make_objects(cluster: Cluster, prometheus_url: str) -> None:
    install_httproute_crd(cluster)  # upstream's, in place of the session's trimmed fixture
    make_targets(cluster)
    # A MetricTemplate and a ClusterMetricTemplate, each with auth from the rollout's namespace.
    make_templated(cluster, prometheus_url, auth=True)
    breach = {
        "interval": "1s",
        "prometheus": {"address": prometheus_url, "auth": {"secretName": "prometheus-auth"}},
        "metrics": [{"name": "error-rate", "query": "vector(1)", "max": 0.5}],
    }
    for body in (
        rollout_manifest("breached", flag="breached", target={"configMap": {"name": "feature-flags"}},
                         stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}], analysis=breach),
        rollout_manifest("steered", flag="steered", target={"configMap": {"name": "feature-flags"}},
                         stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}]),
    ):
        cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)


def replace_rbac(admin_kubeconfig: Path, manifests: list[dict[str, Any]]) -> None:
    documents = of_kind(manifests, "ClusterRole") + of_kind(manifests, "Role")
    real_apiserver.kubectl(admin_kubeconfig, "replace", "-f", "-", stdin=yaml.safe_dump_all(documents))


@pytest.mark.parametrize("mode", list(MODES))
def test_the_operator_runs_under_the_charts_rbac_on_the_real_server_and_needs_every_rule(
    mode: str, admin: Cluster, prometheus_server: PrometheusFactory, tmp_path: Path
) -> None:
    require_tool(HELM_BINARY)
    sets = MODES[mode]
    manifests = render(tmp_path / "helm", sets=sets)
    operator_kubeconfig = real_apiserver.operator_kubeconfig(admin.kubeconfig, tmp_path / "operator.kubeconfig", sets)
    audit_start = len(audit_records(admin.kubeconfig))
    prometheus = prometheus_server()

    # The operator's own kubeconfig is the ServiceAccount's; the test's client stays the admin.
    as_operator = Cluster(None, operator_kubeconfig, None, admin.api, kind="real")
    operators = OperatorFactory(as_operator, tmp_path, standalone=False)  # leader election, as the chart runs it
    try:
        operators(*operator_args(manifests))
        make_objects(admin, prometheus.url)
        for name in (*TARGET_ROLLOUTS, TEMPLATED_ROLLOUT):
            wait_until(lambda name=name: phase(admin, name) == "Succeeded", 60, f"{name} to succeed")
        wait_until(lambda: phase(admin, "breached") == "RolledBack", 60, "the breached rollout to roll back")

        wait_until(lambda: phase(admin, "steered") == "Progressing", 60, "the steered rollout to start")
        assert cli(admin.kubeconfig, "pause", "steered").returncode == 0
        wait_until(lambda: phase(admin, "steered") == "Paused", 60, "the pause to be carried out")

        # A restart: the new process lists, watches and carries on under the same rules.
        operators.stop_all()
        operators(*operator_args(manifests))
        assert cli(admin.kubeconfig, "resume", "steered").returncode == 0
        wait_until(lambda: phase(admin, "steered") == "Progressing", 60, "the resume after a restart")
        assert cli(admin.kubeconfig, "promote", "steered").returncode == 0
        wait_until(lambda: phase(admin, "steered") == "Succeeded", 60, "the promotion after a restart")
    finally:
        operators.stop_all()
        for process in operators.started:
            print(f"--- {process.log_path.name} ---\n{process.log()[-4000:]}")

    events = audit_records(admin.kubeconfig)[audit_start:]
    forbidden = [(e["verb"], e["requestURI"]) for e in events if e["responseStatus"]["code"] == 403]
    assert not forbidden, f"the real server refused the operator: {forbidden}"
    for process in operators.started:
        # A refusal in the log reads "(403)" or "Forbidden"; a bare "403" also matches timestamps.
        refusals = re.findall(r"(?<![.:,\d])\b403\b|Forbidden", process.log())
        assert not refusals, process.log()[-3000:]
    accesses = {a for a in map(access_of, events) if a is not None}
    assert accesses, "the audit log recorded nothing the operator did"
    print("the operator's requests:\n  " + "\n  ".join(sorted(map(str, accesses))))
    assert all(allowed(admin.api, a) for a in accesses)

    # Minimal: without any one rule, or any one verb of a rule, the real authorizer denies some request.
    kinds = of_kind(manifests, "ClusterRole") + of_kind(manifests, "Role")
    try:
        for role in kinds:
            for index, rule in enumerate(role.get("rules") or []):
                variants = [(f"rule {rule}", [r for i, r in enumerate(role["rules"]) if i != index])]
                for verb in rule["verbs"] if len(rule["verbs"]) > 1 else []:
                    fewer = copy.deepcopy(role["rules"])
                    fewer[index]["verbs"] = [v for v in rule["verbs"] if v != verb]
                    variants.append((f"verb {verb!r} of {rule}", fewer))
                for what, rules in variants:
                    changed = copy.deepcopy(manifests)
                    next(m for m in changed if m["kind"] == role["kind"]
                         and m["metadata"]["name"] == role["metadata"]["name"]
                         and m["metadata"].get("namespace") == role["metadata"].get("namespace"))["rules"] = rules
                    replace_rbac(admin.kubeconfig, changed)
                    wait_until(lambda: any(not allowed(admin.api, a) for a in accesses), 15,
                               f"a request of the operator's to be denied without {what} ({role['kind']})")
                    replace_rbac(admin.kubeconfig, manifests)
                    wait_until(lambda: all(allowed(admin.api, a) for a in accesses), 15, "the chart's rules back")
    finally:
        replace_rbac(admin.kubeconfig, manifests)


def test_grants_for_reads_the_bindings_of_the_rendered_chart(tmp_path: Path) -> None:
    """The chart binds its rules to the ServiceAccount this test's kubeconfig authenticates as."""
    require_tool(HELM_BINARY)
    manifests = render(tmp_path / "helm")
    assert grants_for(manifests, RELEASE, NAMESPACE).cluster_rules
    (account,) = of_kind(manifests, "ServiceAccount")
    assert f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}" == SERVICE_ACCOUNT
