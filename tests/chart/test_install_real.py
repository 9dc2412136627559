"""Both install paths on the real kube-apiserver (tier 3): the real helm 4 and kubectl 1.37.

Each test has a control plane of its own with no CRD at all, as a fresh cluster has: the real
server validates every manifest the chart renders (Deployment, RBAC, Service, the CRD itself).
With no kube-controller-manager or kubelet, the Deployment is stored and never runs, so the
install does not `--wait`. What the server did is read from its audit log.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.real_server import AuditLog, require_real
from tools import real_apiserver

from .chart_support import CHART, NAMESPACE, RELEASE, REPO, helm
from .chart_support import KUBECTL as KUBECTL_BINARY

pytestmark = pytest.mark.integration
CRD = "featurerollouts.featurerollout.io"


@pytest.fixture
def fresh_cluster() -> Iterator[Path]:
    """A real control plane of this test's own, with no CRD; its admin kubeconfig."""
    require_real()
    with real_apiserver.running(default_crds=False) as (_, admin):
        yield admin


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run([str(KUBECTL_BINARY), "--kubeconfig", str(kubeconfig), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout if done.returncode == 0 else done.stderr


def test_plain_kubectl_install_of_crds_and_deploy_manifests(fresh_cluster: Path) -> None:
    kubectl(fresh_cluster, "apply", "--server-side", "-f", "crds/")
    # Every CRD: deploy/ also holds the chart's ClusterMetricTemplates.
    kubectl(fresh_cluster, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    kubectl(fresh_cluster, "create", "namespace", NAMESPACE)
    applied = kubectl(fresh_cluster, "apply", "-f", "deploy/featurerollout.yaml")
    for created in ("serviceaccount/featurerollout", "clusterrole.rbac.authorization.k8s.io/featurerollout",
                    "clusterrolebinding.rbac.authorization.k8s.io/featurerollout", "service/featurerollout-metrics",
                    "deployment.apps/featurerollout"):
        assert f"{created} created" in applied, applied
    kubectl(fresh_cluster, "get", "deployment", RELEASE, "-n", NAMESPACE)
    assert kubectl(fresh_cluster, "get", "fro", "-A", "-o", "name") == ""  # served, and empty


def test_helm_install_refuses_bad_values_with_a_clear_message(fresh_cluster: Path, tmp_path: Path) -> None:
    home = tmp_path / "helm-home"
    audit = AuditLog(fresh_cluster.parent / "audit.log")
    for sets, message in ((["replicaCount=0"], "at '/replicaCount': minimum: got 0, want 1"),
                          (["leaderElection.renewDeadline=30"],
                           "leaderElection.leaseDuration (15) must be more than leaderElection.renewDeadline (30)")):
        done = helm(home, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                    *[f"--set={s}" for s in sets], kubeconfig=fresh_cluster, check=False)
        assert done.returncode != 0
        assert message in done.stderr, done.stderr
    # Nothing was created.
    assert not [r for r in audit.requests() if r["verb"] == "create" and r["user_agent"].lower().startswith("helm")]


def test_helm_install_upgrade_uninstall_keeps_the_crd(fresh_cluster: Path, tmp_path: Path) -> None:
    home = tmp_path / "helm-home"
    audit = AuditLog(fresh_cluster.parent / "audit.log")
    installed = helm(home, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                     kubeconfig=fresh_cluster).stdout
    assert "STATUS: deployed" in installed
    assert "kubectl featurerollout status NAME" in installed  # NOTES.txt

    kubectl(fresh_cluster, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    crd_writes = [r for r in audit.requests(resource="customresourcedefinitions")
                  if r["verb"] in ("create", "update", "patch") and r["status"] < 300]
    # One write per CRD in crds/ (FeatureRollout, MetricTemplate, ClusterMetricTemplate), all Helm's.
    assert [r["user_agent"].split("/")[0].lower() for r in crd_writes] == ["helm"] * 3, crd_writes
    # The chart's ready ClusterMetricTemplates, installed after their CRD.
    assert kubectl(fresh_cluster, "get", "clustermetrictemplates", "-o", "name").split() == [
        "clustermetrictemplate.featurerollout.io/error-rate", "clustermetrictemplate.featurerollout.io/latency-p95"]
    assert kubectl(fresh_cluster, "get", "deployment", RELEASE, "-n", NAMESPACE, "-o",
                   "jsonpath={.spec.template.spec.containers[0].args[0]}") == "run"
    kubectl(fresh_cluster, "get", "clusterrole", RELEASE)
    kubectl(fresh_cluster, "get", "clusterrolebinding", RELEASE)
    kubectl(fresh_cluster, "get", "fro", "-A")
    # High availability: two replicas, their disruption budget, and the Lease's Role.
    assert kubectl(fresh_cluster, "get", "deployment", RELEASE, "-n", NAMESPACE, "-o",
                   "jsonpath={.spec.replicas}") == "2"
    kubectl(fresh_cluster, "get", "poddisruptionbudget", RELEASE, "-n", NAMESPACE)
    kubectl(fresh_cluster, "get", "role,rolebinding", f"{RELEASE}-leader-election", "-n", NAMESPACE)
    assert "kubectl get lease -n featurerollout-system" in installed  # NOTES.txt

    # values.schema.json: the real helm refuses a bad value before it touches the cluster.
    refused = helm(home, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "shards=0",
                   kubeconfig=fresh_cluster, check=False)
    assert refused.returncode != 0
    assert "at '/shards': minimum: got 0, want 1" in refused.stderr, refused.stderr

    helm(home, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "logLevel=debug",
         kubeconfig=fresh_cluster)
    args = kubectl(fresh_cluster, "get", "deployment", RELEASE, "-n", NAMESPACE, "-o",
                   "jsonpath={.spec.template.spec.containers[0].args}")
    assert "--log-level=debug" in args
    assert len([r for r in audit.requests(resource="customresourcedefinitions")
                if r["verb"] in ("create", "update", "patch") and r["status"] < 300]) == len(crd_writes)

    helm(home, "uninstall", RELEASE, "--namespace", NAMESPACE, kubeconfig=fresh_cluster)
    assert "NotFound" in kubectl(fresh_cluster, "get", "deployment", RELEASE, "-n", NAMESPACE, check=False)
    assert "NotFound" in kubectl(fresh_cluster, "get", "clusterrole", RELEASE, check=False)
    # Helm never deletes what it installed from crds/: the FeatureRollouts survive an uninstall.
    kubectl(fresh_cluster, "get", "crd", CRD)
