"""Helpers of the chart tests: the real helm binary, rendering, and a small RBAC evaluator."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.paths import REPO

CHART = REPO / "charts" / "featurerollout"
HELM = REPO / ".cache" / "bin" / "helm"
KUBECTL = REPO / ".cache" / "bin" / "kubectl"
RELEASE = "featurerollout"
NAMESPACE = "featurerollout-system"

Manifest = dict[str, Any]


def require_tool(binary: Path) -> Path:
    """A binary from `make tools`: skip the test when it is missing, but fail it when CI is set."""
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    reason = f"{binary.relative_to(REPO)} is missing: run `make tools` (scripts/fetch_kube_tools.py)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


def helm_env(home: Path, kubeconfig: Path | None = None) -> dict[str, str]:
    """An environment where helm keeps its cache, config and data under `home`, never in ~."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env.update(
        HOME=str(home),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def helm(home: Path, *args: str, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real helm; fail the test with its output when `check` and it fails."""
    binary = require_tool(HELM)
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=REPO,
                          env=helm_env(home, kubeconfig), timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done


def template_args(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    """`helm template` arguments for the chart as `helm install featurerollout ... -n featurerollout-system`."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(home: Path, values: Sequence[Path] = (), sets: Sequence[str] = (),
           include_crds: bool = False) -> list[Manifest]:
    """The chart's manifests, as `helm template` renders them."""
    args = template_args(values, sets) + (["--include-crds"] if include_crds else [])
    return [doc for doc in yaml.safe_load_all(helm(home, *args).stdout) if doc]


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


# ------------------------------------------------------------------------------------ RBAC


@dataclass(frozen=True)
class Access:
    """One API request reduced to what RBAC decides on."""

    group: str
    resource: str  # `featurerollouts` or `featurerollouts/status`
    verb: str
    namespace: str  # "" for cluster-scoped requests and requests across all namespaces

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster)"
        return f"{self.verb} {self.resource}.{self.group or 'core'}{where}"


def rule_allows(rule: Manifest, access: Access) -> bool:
    """Whether one PolicyRule grants `access`, as Kubernetes' RBAC authorizer matches rules:
    `*` in apiGroups/verbs, `*` and `*/<subresource>` in resources. Rules with resourceNames never
    grant a request this test maps (list/watch/create carry no name; get/update/patch would need the
    name in the rule, which the chart cannot know)."""
    if rule.get("resourceNames"):
        return False
    groups, verbs = rule.get("apiGroups") or [], rule.get("verbs") or []
    resources = rule.get("resources") or []
    _, _, subresource = access.resource.partition("/")
    resource_ok = "*" in resources or access.resource in resources or (
        bool(subresource) and f"*/{subresource}" in resources)
    return ("*" in groups or access.group in groups) and resource_ok and ("*" in verbs or access.verb in verbs)


@dataclass
class Grants:
    """What a ServiceAccount may do: the rules of the (Cluster)Roles bound to it, with their scope."""

    cluster_rules: list[Manifest]
    namespaced_rules: dict[str, list[Manifest]]

    def allows(self, access: Access) -> bool:
        if any(rule_allows(rule, access) for rule in self.cluster_rules):
            return True
        # A RoleBinding grants only inside its namespace, and never cluster-wide requests.
        return bool(access.namespace) and any(
            rule_allows(rule, access) for rule in self.namespaced_rules.get(access.namespace, [])
        )

    def without_rule(self, scope: str, index: int) -> Grants:
        """The same grants with one rule removed (`scope` "" is the ClusterRole)."""
        if not scope:
            return Grants([r for i, r in enumerate(self.cluster_rules) if i != index], self.namespaced_rules)
        changed = dict(self.namespaced_rules)
        changed[scope] = [r for i, r in enumerate(changed[scope]) if i != index]
        return Grants(self.cluster_rules, changed)


def grants_for(manifests: list[Manifest], service_account: str, namespace: str) -> Grants:
    """The rules the rendered chart grants to `namespace/service_account`."""

    def bound(binding: Manifest) -> bool:
        return any(s.get("kind") == "ServiceAccount" and s.get("name") == service_account
                   and s.get("namespace") == namespace for s in binding.get("subjects") or [])

    cluster_roles = {m["metadata"]["name"]: m for m in of_kind(manifests, "ClusterRole")}
    roles = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in of_kind(manifests, "Role")}
    cluster_rules: list[Manifest] = []
    for binding in filter(bound, of_kind(manifests, "ClusterRoleBinding")):
        cluster_rules += cluster_roles[binding["roleRef"]["name"]].get("rules") or []
    namespaced: dict[str, list[Manifest]] = {}
    for binding in filter(bound, of_kind(manifests, "RoleBinding")):
        ns = binding["metadata"]["namespace"]
        ref = binding["roleRef"]
        role = cluster_roles[ref["name"]] if ref["kind"] == "ClusterRole" else roles[(ns, ref["name"])]
        namespaced.setdefault(ns, []).extend(role.get("rules") or [])
    return Grants(cluster_rules, namespaced)


# Kinds the chart renders that kubernetes-validate has no schema for: each has its own test
# (test_service_monitor_is_well_formed, tests/chart/test_chart_metric_templates.py).
CUSTOM_KINDS = frozenset({"ServiceMonitor", "ClusterMetricTemplate"})


def validate_builtin(manifest: Manifest, version: str = "1.37") -> bool:
    """Validate a built-in kind strictly against Kubernetes' schema; False: a custom kind, skipped."""
    if manifest["kind"] in CUSTOM_KINDS:
        return False
    kubernetes_validate.validate(manifest, version, strict=True)
    return True
