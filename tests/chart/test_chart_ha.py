"""The chart's high-availability parts (issue 13), rendered by the real helm: replicas, the
PodDisruptionBudget, anti-affinity, shards, the Lease RBAC, and values.schema.json refusing bad
values with a message that names the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurerollout.commands.cli import build_parser

from .chart_support import NAMESPACE, Manifest, helm, of_kind, render, template_args, validate_builtin


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def args_of(deployment: Manifest) -> list[str]:
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    result: list[str] = operator["args"]
    return result


def test_the_default_install_is_two_replicas_spread_over_nodes_with_a_disruption_budget(home: Path) -> None:
    manifests = render(home)
    (deployment,) = of_kind(manifests, "Deployment")
    (budget,) = of_kind(manifests, "PodDisruptionBudget")
    assert deployment["spec"]["replicas"] == 2
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": selector}}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
           for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_hard_anti_affinity_and_a_user_affinity_wins(home: Path) -> None:
    (deployment,) = of_kind(render(home, sets=["podAntiAffinity=hard"]), "Deployment")
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    (deployment,) = of_kind(render(home, sets=["podAntiAffinity="]), "Deployment")
    assert "affinity" not in deployment["spec"]["template"]["spec"]
    mine = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]" \
        ".matchExpressions[0]"
    (deployment,) = of_kind(render(home, sets=[f"{mine}.key=zone", f"{mine}.operator=Exists"]), "Deployment")
    assert list(deployment["spec"]["template"]["spec"]["affinity"]) == ["nodeAffinity"]


def test_lease_rbac_is_get_create_update_on_leases_in_the_lease_namespace_only(home: Path) -> None:
    for sets, namespace in (([], NAMESPACE), (["leaderElection.namespace=ops"], "ops")):
        manifests = render(home, sets=sets)
        roles = [m for m in of_kind(manifests, "Role") if m["metadata"]["name"].endswith("leader-election")]
        (role,) = roles
        assert role["metadata"]["namespace"] == namespace
        assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                  "verbs": ["get", "create", "update"]}]
        (binding,) = [m for m in of_kind(manifests, "RoleBinding") if m["metadata"]["name"] == role["metadata"]["name"]]
        assert binding["metadata"]["namespace"] == namespace
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "featurerollout", "namespace": NAMESPACE}]
        # Nothing about leases anywhere else.
        others = of_kind(manifests, "ClusterRole") + [r for r in of_kind(manifests, "Role") if r is not role]
        assert not any("leases" in rule["resources"] for r in others for rule in r["rules"])
        assert f"--lease-namespace={namespace}" in args_of(of_kind(manifests, "Deployment")[0])


def test_timings_are_values(home: Path) -> None:
    (deployment,) = of_kind(render(home, sets=["leaderElection.leaseDuration=30", "leaderElection.renewDeadline=20",
                                               "leaderElection.retryPeriod=4"]), "Deployment")
    parsed = build_parser().parse_args(args_of(deployment))
    assert (parsed.lease_duration, parsed.renew_deadline, parsed.retry_period) == (30, 20, 4)


def test_fractions_given_with_set_are_seconds(home: Path) -> None:
    # `helm --set` types 7.5 as a string (only integers become numbers): the chart takes it as seconds.
    (deployment,) = of_kind(render(home, sets=["leaderElection.renewDeadline=7.5", "leaderElection.retryPeriod=1.5"]),
                            "Deployment")
    parsed = build_parser().parse_args(args_of(deployment))
    assert (parsed.renew_deadline, parsed.retry_period) == (7.5, 1.5)


def test_n_shards_are_n_deployments_each_with_its_slice_and_budget(home: Path) -> None:
    manifests = render(home, sets=["shards=3"])
    deployments = of_kind(manifests, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [f"featurerollout-shard-{i}-of-3" for i in range(3)]
    shards = [build_parser().parse_args(args_of(d)).shard for d in deployments]
    assert [(s.index, s.count) for s in shards] == [(0, 3), (1, 3), (2, 3)]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert [s["featurerollout.io/shard"] for s in selectors] == ["0-of-3", "1-of-3", "2-of-3"]
    for deployment, selector in zip(deployments, selectors, strict=True):
        assert deployment["spec"]["replicas"] == 2
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        term = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["labelSelector"]["matchLabels"] == selector  # spread a shard's own replicas
    budgets = {b["metadata"]["name"]: b["spec"]["selector"]["matchLabels"]
               for b in of_kind(manifests, "PodDisruptionBudget")}
    assert budgets == {d["metadata"]["name"]: s for d, s in zip(deployments, selectors, strict=True)}
    # The metrics Service selects every shard's pods.
    (service,) = of_kind(manifests, "Service")
    assert all(service["spec"]["selector"].items() <= s.items() for s in selectors)
    for manifest in manifests:
        validate_builtin(manifest)


@pytest.mark.parametrize(("sets", "message"), [
    (["replicaCount=0"], "at '/replicaCount': minimum: got 0, want 1"),
    (["shards=0"], "at '/shards': minimum: got 0, want 1"),
    (["shards=two"], "at '/shards': got string, want integer"),
    (["leaderElection.leaseDuration=fifteen"], "at '/leaderElection/leaseDuration': got string, want integer"),
    (["podAntiAffinity=always"], "at '/podAntiAffinity': value must be one of '', 'soft', 'hard'"),
    (["leaderElection.leaseSeconds=15"], "additional properties 'leaseSeconds' not allowed"),
    (["leaderElection.renewDeadline=20"],
     "leaderElection.leaseDuration (15) must be more than leaderElection.renewDeadline (20)"),
    (["leaderElection.retryPeriod=9"],
     "leaderElection.renewDeadline (10) must be more than 1.2 x leaderElection.retryPeriod (9)"),
    (["leaderElection.enabled=false"], "replicaCount > 1 needs leaderElection.enabled=true"),
    (["leaderElection.retryPeriod=0.5"], "leaderElection.retryPeriod (0.5) must be at least 1 second"),
    (["leaderElection.renewDeadline=0.9"], "leaderElection.renewDeadline (0.9) must be more than 1 second"),
    (["leaderElection.retryPeriod=1s"], "'1s' does not match pattern"),
])
def test_bad_values_are_refused_naming_the_value(home: Path, sets: list[str], message: str) -> None:
    done = helm(home, *template_args(sets=sets), check=False)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr

