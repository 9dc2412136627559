"""The chart without a cluster (tier 4): helm lint, helm template, and schema validation of what it renders.

Every built-in manifest is validated with kubernetes-validate (Kubernetes 1.37 schemas, offline,
strict: unknown fields fail). The ServiceMonitor is prometheus-operator's custom kind, which
kubernetes-validate has no schema for: it is checked structurally below.
"""

from __future__ import annotations

import filecmp
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart_support import CHART, NAMESPACE, REPO, Manifest, helm, of_kind, render, template_args, validate_builtin

VALUES = Path(__file__).parent / "values"
NAMESPACED = VALUES / "namespaced.yaml"
K8S_VERSION = "1.37"
DEPLOY = REPO / "deploy" / "featurerollout.yaml"
REGENERATE_DEPLOY = (
    "helm template featurerollout charts/featurerollout --namespace featurerollout-system"
    " > deploy/featurerollout.yaml"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def container(manifests: list[Manifest]) -> dict[str, Any]:
    (deployment,) = of_kind(manifests, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = operator
    return result


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(home: Path, strict: bool) -> None:
    done = helm(home, "lint", str(CHART), *(["--strict"] if strict else []))
    assert "0 chart(s) failed" in done.stdout


def test_helm_lint_passes_with_the_non_default_values(home: Path) -> None:
    helm(home, "lint", "--strict", str(CHART), "--values", str(NAMESPACED))


@pytest.mark.parametrize("values", [(), (NAMESPACED,)], ids=["defaults", "namespaced"])
def test_every_rendered_builtin_manifest_validates_strictly(home: Path, values: tuple[Path, ...]) -> None:
    manifests = render(home, values, include_crds=True)
    checked = []
    for manifest in manifests:
        if validate_builtin(manifest, K8S_VERSION):
            checked.append(manifest["kind"])
    assert {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
            "Deployment"} <= set(checked)


def test_defaults_watch_all_namespaces_with_two_leader_elected_replicas(home: Path) -> None:
    manifests = render(home)
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    operator = container(manifests)
    assert operator["image"] == "ghcr.io/featurerollout/featurerollout:0.1.0"
    assert operator["args"] == [
        "run", "--all-namespaces", f"--lease-namespace={NAMESPACE}", "--lease-duration=15", "--renew-deadline=10",
        "--retry-period=2", "--log-format=json", "--log-level=info",
        "--metrics-port=8080", "--liveness=http://0.0.0.0:8081/healthz", "--concurrency=64",
        "--analysis-status-every=60", "--max-response-bytes=10485760", "--deny-loopback",
    ]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 8080, "healthz": 8081}
    assert operator["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    security = operator["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["serviceAccountName"] == "featurerollout"
    assert {m["mountPath"] for m in operator["volumeMounts"]} == {"/tmp"}
    assert not of_kind(manifests, "ServiceMonitor")
    # Only the Lease's Role, in the release's namespace.
    assert [(m["metadata"]["name"], m["metadata"]["namespace"]) for m in of_kind(manifests, "Role")] == [
        ("featurerollout-leader-election", NAMESPACE)]
    (service,) = of_kind(manifests, "Service")
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_the_image_tag_can_be_set(home: Path) -> None:
    manifests = render(home, sets=["image.tag=sha-1234", "image.pullPolicy=Always"])
    assert container(manifests)["image"] == "ghcr.io/featurerollout/featurerollout:sha-1234"
    assert container(manifests)["imagePullPolicy"] == "Always"


def test_namespaced_values_render_roles_per_namespace_and_a_service_monitor(home: Path) -> None:
    manifests = render(home, [NAMESPACED])
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    args = container(manifests)["args"]
    assert "--namespace=shop" in args and "--namespace=payments" in args
    assert "--all-namespaces" not in args and "--standalone" not in args  # leader election: no --standalone
    assert "--lease-namespace=ops" in args
    assert "--log-level=debug" in args
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "checkout"}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    roles = {m["metadata"]["namespace"] for m in of_kind(manifests, "Role")}
    bindings = {m["metadata"]["namespace"] for m in of_kind(manifests, "RoleBinding")}
    assert roles == bindings == {"shop", "payments", "ops"}  # ops: the Lease's
    (cluster_role,) = of_kind(manifests, "ClusterRole")
    # Only what must be cluster-wide: CRD discovery and Kopf's namespace observation.
    # Secrets and the rest stay in the namespaces.
    # (ClusterMetricTemplates are cluster-scoped: read through the ClusterRole in every mode.)
    assert [r["resources"] for r in cluster_role["rules"]] == [
        ["customresourcedefinitions"], ["clustermetrictemplates"], ["namespaces"]]
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_globs_keep_rbac_cluster_wide_and_list_namespaces(home: Path) -> None:
    manifests = render(home, sets=["watch.namespaces={team-*,shop}"])
    assert "--namespace=team-*" in container(manifests)["args"]
    # No Role but the Lease's.
    assert [r["metadata"]["name"] for r in of_kind(manifests, "Role")] == ["featurerollout-leader-election"]
    (cluster_role,) = of_kind(manifests, "ClusterRole")
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]} in cluster_role["rules"]
    assert any("secrets" in r["resources"] for r in cluster_role["rules"])


def test_service_monitor_is_well_formed(home: Path) -> None:
    """prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1), checked by hand: its selector
    finds the metrics Service, and its endpoint names the Service's port."""
    manifests = render(home, sets=["serviceMonitor.enabled=true"])
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    (service,) = of_kind(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", monitor["metadata"]["name"])
    assert monitor["metadata"]["namespace"] == NAMESPACE
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    for key in ("interval", "scrapeTimeout"):
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", endpoint[key]), key
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}


def test_metrics_port_zero_turns_metrics_off(home: Path) -> None:
    manifests = render(home, sets=["metrics.port=0", "serviceMonitor.enabled=true"])
    assert not of_kind(manifests, "Service") and not of_kind(manifests, "ServiceMonitor")
    # `--metrics-port 0` means a free port to the operator (as everywhere else); off is --no-metrics.
    assert "--no-metrics" in container(manifests)["args"]
    assert not [a for a in container(manifests)["args"] if a.startswith("--metrics-port")]
    assert {p["name"] for p in container(manifests)["ports"]} == {"healthz"}


def test_more_than_one_replica_without_leader_election_is_refused(home: Path) -> None:
    done = helm(home, *template_args(sets=["leaderElection.enabled=false"]), check=False)
    assert done.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled=true" in done.stderr
    manifests = render(home, sets=["leaderElection.enabled=false", "replicaCount=1"])
    assert "--standalone" in container(manifests)["args"]
    assert not of_kind(manifests, "Role")


def test_existing_service_account_and_no_rbac(home: Path) -> None:
    manifests = render(home, sets=["serviceAccount.create=false", "serviceAccount.name=ops", "rbac.create=false"])
    assert not of_kind(manifests, "ServiceAccount")
    assert not of_kind(manifests, "ClusterRole") and not of_kind(manifests, "ClusterRoleBinding")
    (deployment,) = of_kind(manifests, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_the_chart_crd_is_the_generated_crd() -> None:
    names = sorted(p.name for p in (REPO / "crds").iterdir())
    assert names == ["clustermetrictemplates.yaml", "featurerollouts.yaml", "metrictemplates.yaml"]
    for name in names:
        chart_copy = CHART / "crds" / name
        generated = REPO / "crds" / name
        assert filecmp.cmp(chart_copy, generated, shallow=False), (
            f"{chart_copy.relative_to(REPO)} differs from {generated.relative_to(REPO)}: "
            "run `cp crds/*.yaml charts/featurerollout/crds/` (part of `make crd`)"
        )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == names


def test_deploy_manifests_are_the_rendered_chart(home: Path) -> None:
    rendered = helm(home, *template_args()).stdout
    assert DEPLOY.read_text() == rendered, f"deploy/featurerollout.yaml is stale: run `{REGENERATE_DEPLOY}`"


def test_chart_metadata(home: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], chart["appVersion"]) == (
        "v2", "featurerollout", "0.1.0", "0.1.0")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["crds"]["install"] is True and values["rbac"]["create"] is True


def dockerfile_instruction(text: str, name: str) -> list[str]:
    """The exec-form (JSON) argument list of the last `name` instruction of a Dockerfile."""
    joined = re.sub(r"\\\n", " ", text)
    found = [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]
    assert found, f"the Dockerfile has no {name}"
    value: list[str] = yaml.safe_load(found[-1])
    assert isinstance(value, list), f"{name} must use the exec form, e.g. {name} [\"featurerollout\"]"
    return value


def test_dockerfile_entrypoint_and_cmd_agree_with_the_chart(home: Path) -> None:
    text = (REPO / "Dockerfile").read_text()
    entrypoint = dockerfile_instruction(text, "ENTRYPOINT")
    cmd = dockerfile_instruction(text, "CMD")
    assert entrypoint == ["featurerollout"]
    assert cmd == ["run"]
    operator = container(render(home))
    # The chart keeps the ENTRYPOINT (no `command`) and replaces CMD with `args`, whose subcommand is CMD's.
    assert "command" not in operator
    assert operator["args"][: len(cmd)] == cmd
    # The image's user is the one the chart's securityContext runs as.
    users = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == "65532"
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    # And the command the image runs accepts the chart's arguments.
    from featurerollout.commands.cli import build_parser

    parsed = build_parser().parse_args(operator["args"])
    assert parsed.all_namespaces and not parsed.standalone and parsed.liveness == "http://0.0.0.0:8081/healthz"
    assert (parsed.lease_namespace, parsed.lease_duration, parsed.renew_deadline, parsed.retry_period) == (
        NAMESPACE, 15, 10, 2)
    assert shlex.join(entrypoint + operator["args"]).startswith("featurerollout run ")
