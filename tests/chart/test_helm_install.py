"""`helm install` of the chart against the sandbox (tier 3): the real helm 4 and kubectl 1.37.

The sandbox serves the kinds this project's operator touches, not Deployments, Services,
ServiceAccounts or RBAC (docs/sandbox.md). This test registers those kinds in an in-process
sandbox as plain built-ins (stored, listed, watched, no validation, no controllers) so that helm
can install the chart. Nothing runs the Deployment (there is no kubelet), so the test never waits
for pods (`--wait` would wait for a ready replica forever); it checks what the API holds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from featurerollout_sandbox.resources import ResourceType, Version
from featurerollout_sandbox.server import Sandbox

from .chart_support import CHART, KUBECTL, NAMESPACE, RELEASE, REPO, helm, require_tool

pytestmark = pytest.mark.integration

# (group, version, kind, plural, namespaced, has status)
CHART_KINDS = [
    ("apps", "v1", "Deployment", "deployments", True, True),
    ("", "v1", "ServiceAccount", "serviceaccounts", True, False),
    ("", "v1", "Service", "services", True, True),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, False),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False, False),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True, False),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, False),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, True),
]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An in-process sandbox that also stores the chart's built-in kinds."""
    with Sandbox(crd_dir=REPO / "crds", bookmark_interval=0.2) as running:
        resources = running.server.cluster.resources
        for group, version, kind, plural, namespaced, status in CHART_KINDS:
            rt = ResourceType(group=group, kind=kind, plural=plural, singular=kind.lower(), namespaced=namespaced,
                              versions=[Version(version, status_subresource=status, storage=True)],
                              tracks_generation=group == "apps")
            assert rt.key not in resources, f"the sandbox serves {rt.qualified} now: drop it from CHART_KINDS"
            resources[rt.key] = rt
        yield running


Kubectl = Callable[..., str]


@pytest.fixture
def kubectl(sandbox: Sandbox, tmp_path: Path) -> Kubectl:
    """The real kubectl 1.37 on the sandbox: stdout, or stderr when it fails and `check` is False."""
    binary = require_tool(KUBECTL)
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, check: bool = True) -> str:
        done = subprocess.run([str(binary), "--kubeconfig", str(kubeconfig), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path / "home")})
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout if done.returncode == 0 else done.stderr

    return run


def test_plain_kubectl_install_of_crds_and_deploy_manifests(sandbox: Sandbox, kubectl: Kubectl) -> None:
    kubectl("delete", "crd", "featurerollouts.featurerollout.io")
    kubectl("apply", "-f", "crds/")
    kubectl("create", "namespace", NAMESPACE)
    applied = kubectl("apply", "-f", "deploy/featurerollout.yaml")
    for created in ("serviceaccount/featurerollout", "clusterrole.rbac.authorization.k8s.io/featurerollout",
                    "clusterrolebinding.rbac.authorization.k8s.io/featurerollout", "service/featurerollout-metrics",
                    "deployment.apps/featurerollout"):
        assert f"{created} created" in applied, applied
    kubectl("get", "crd", "featurerollouts.featurerollout.io")
    kubectl("get", "deployment", RELEASE, "-n", NAMESPACE)


def test_helm_install_then_uninstall_keeps_the_crd(sandbox: Sandbox, kubectl: Kubectl, tmp_path: Path) -> None:
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "helm-kubeconfig")
    home = tmp_path / "helm-home"

    # The sandbox loads crds/ on start; a fresh cluster has no CRD, so remove it first and let helm
    # install it from the chart's crds/ directory.
    crds = ("featurerollouts", "metrictemplates", "clustermetrictemplates")
    for plural in crds:
        kubectl("delete", "crd", f"{plural}.featurerollout.io")
        assert "NotFound" in kubectl("get", "crd", f"{plural}.featurerollout.io", check=False)

    installed = helm(home, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
                     kubeconfig=kubeconfig).stdout
    assert "STATUS: deployed" in installed
    assert "kubectl get fro -A" in installed  # NOTES.txt
    assert "kubectl featurerollout status NAME" in installed

    kubectl("get", "crd", "featurerollouts.featurerollout.io")
    crd_writes = [r for r in sandbox.requests.records() if r["resource"] == "customresourcedefinitions"
                  and r["verb"] in ("create", "update", "patch") and r["status"] < 300]
    assert [r["user_agent"].split("/")[0].lower() for r in crd_writes] == ["helm"] * len(crds), crd_writes
    assert kubectl("get", "clustermetrictemplates", "-o", "name").split() == [
        "clustermetrictemplate.featurerollout.io/error-rate", "clustermetrictemplate.featurerollout.io/latency-p95"]
    kubectl("get", "namespace", NAMESPACE)
    for kind in ("deployment", "serviceaccount", "service"):
        names = kubectl("get", kind, "-n", NAMESPACE, "-o", "name").split()
        assert names, f"no {kind} in {NAMESPACE}"
    assert kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, "-o",
                   "jsonpath={.spec.template.spec.containers[0].args[0]}") == "run"
    kubectl("get", "clusterrole", RELEASE)
    kubectl("get", "clusterrolebinding", RELEASE)
    # The CRD works: the API serves FeatureRollouts, and `kubectl get fro -A` answers.
    kubectl("get", "fro", "-A")
    assert "featurerollout" in helm(home, "list", "-n", NAMESPACE, kubeconfig=kubeconfig).stdout

    # An upgrade changes the templates and leaves the CRD alone (crds/ is install-only).
    helm(home, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "logLevel=debug",
         kubeconfig=kubeconfig)
    args = kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, "-o",
                   "jsonpath={.spec.template.spec.containers[0].args}")
    assert "--log-level=debug" in args
    assert len([r for r in sandbox.requests.records() if r["resource"] == "customresourcedefinitions"
                and r["verb"] in ("create", "update", "patch")]) == len(crd_writes)

    helm(home, "uninstall", RELEASE, "--namespace", NAMESPACE, kubeconfig=kubeconfig)
    assert "NotFound" in kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, check=False)
    assert "NotFound" in kubectl("get", "serviceaccount", RELEASE, "-n", NAMESPACE, check=False)
    assert "NotFound" in kubectl("get", "clusterrole", RELEASE, check=False)
    assert "NotFound" in kubectl("get", "clusterrolebinding", RELEASE, check=False)
    # Helm never deletes what it installed from crds/: the FeatureRollouts survive an uninstall.
    kubectl("get", "crd", "featurerollouts.featurerollout.io")
