"""`featurerollout list` (and `kubectl featurerollout list`) as a user runs it, against the API server.

Rollouts in different phases, in two namespaces: their statuses are written through the status
subresource (validated by the CRD's schema, as the operator's writes are), so the phases and the
times in stage are known exactly. The operator's own statuses go through `list` in
tests/edges/metrics/test_dashboard_queries.py, after a real rollout and a real rollback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from featurerollout import GROUP, PLURAL, VERSION
from tests.support.cluster import REPO, Cluster, featurerollout_command, rollout_manifest, wait_until
from tests.support.real_server import require_real
from tools import real_apiserver as control_plane

pytestmark = pytest.mark.integration

KUBECTL = REPO / ".cache" / "bin" / "kubectl"
SPEC: dict[str, Any] = {
    "target": {"configMap": {"name": "feature-flags"}},
    "stages": [{"weight": 10, "duration": "1h"}, {"weight": 25, "duration": "1h"},
               {"weight": 50, "duration": "1h"}, {"weight": 100}],
    "analysis": {"interval": "1m", "prometheus": {"address": "http://127.0.0.1:1"},
                 "metrics": [{"name": "error-rate", "query": "x", "max": 0.05}]},
}


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="seconds").replace("+00:00", "Z")


def ensure_namespace(cluster: Cluster, name: str) -> None:
    try:
        cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


def make(cluster: Cluster, namespace: str, name: str, status: dict[str, Any] | None) -> None:
    body = rollout_manifest(name, namespace, flag=name, **SPEC)
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    if status is not None:
        cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                             {"status": status})


def metric(result: str, value: float | None) -> dict[str, Any]:
    return {"name": "error-rate", "result": result, "value": value, "evaluatedAt": _ago(10)}


def populate(cluster: Cluster) -> None:
    for namespace in ("shop", "search"):
        ensure_namespace(cluster, namespace)
    make(cluster, "shop", "checkout", {
        "phase": "Progressing", "currentStage": 1, "currentWeight": 25, "stage": "2/4", "startedAt": _ago(4000),
        "stageStartedAt": _ago(192), "lastAnalysisAt": _ago(10), "metrics": [metric("Passed", 0.01)],
    })
    make(cluster, "shop", "payments", {
        "phase": "RolledBack", "currentStage": 2, "currentWeight": 0, "stage": "3/4", "startedAt": _ago(9000),
        "stageStartedAt": _ago(300), "finishedAt": _ago(60), "metrics": [metric("Failed", 0.12)],
    })
    make(cluster, "shop", "cart", None)  # not seen by an operator yet
    make(cluster, "search", "ranking", {
        "phase": "Paused", "currentStage": 0, "currentWeight": 10, "stage": "1/4", "startedAt": _ago(700),
        "stageStartedAt": _ago(700), "lastAnalysisAt": _ago(10), "manualPause": True,
        "metrics": [metric("NoData", None)],
    })


def run_list(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        featurerollout_command("list", "--kubeconfig", str(kubeconfig or cluster.kubeconfig), *args),
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def table_rows(stdout: str) -> list[list[str]]:
    return [re.split(r" {3,}", line.strip()) for line in stdout.splitlines()]


def _minutes_seconds(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    assert match and text, text
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_list_shows_each_rollout_in_its_phase(cluster: Cluster) -> None:
    populate(cluster)

    done = run_list(cluster, "-n", "shop")
    assert done.returncode == 0, done.stderr
    header, *lines = table_rows(done.stdout)
    assert header == ["NAME", "PHASE", "WEIGHT", "STAGE", "TIME IN STAGE", "LAST VERDICT"]
    by_name = {line[0]: line for line in lines}
    assert set(by_name) == {"cart", "checkout", "payments"}  # not the other namespace's
    assert by_name["cart"] == ["cart", "Pending", "0%", "-", "-", "-"]
    assert by_name["checkout"][:4] == ["checkout", "Progressing", "25%", "2/4"]
    # 192 s ago when written; give the CLI's start a wide margin on a loaded machine
    assert 192 <= _minutes_seconds(by_name["checkout"][4]) <= 192 + 60
    assert by_name["checkout"][5] == "Passed"
    assert by_name["payments"] == ["payments", "RolledBack", "0%", "3/4", "-", "Failed: error-rate 0.12 > 0.05"]

    done = run_list(cluster, "-A", "-o", "wide")
    assert done.returncode == 0, done.stderr
    header, *lines = table_rows(done.stdout)
    assert header == ["NAMESPACE", "NAME", "PHASE", "WEIGHT", "STAGE", "TIME IN STAGE", "LAST VERDICT",
                      "FLAG", "TARGET", "NEXT CHECK"]
    by_name = {line[1]: line for line in lines}
    assert [line[:2] for line in lines] == [["search", "ranking"], ["shop", "cart"], ["shop", "checkout"],
                                            ["shop", "payments"]]
    ranking = by_name["ranking"]
    assert ranking[2:5] == ["Paused", "10%", "1/4"] and ranking[6] == "NoData: error-rate"
    assert ranking[7:9] == ["ranking", "configMap/feature-flags"]
    assert re.fullmatch(r"in \d+s", ranking[9])  # the next analysis, a minute after the last
    assert by_name["payments"][9] == "-"  # finished: nothing scheduled

    done = run_list(cluster, "-A", "-o", "json")
    assert done.returncode == 0, done.stderr
    items = {item["name"]: item for item in json.loads(done.stdout)["items"]}
    assert items["payments"]["lastVerdict"] == "Failed: error-rate 0.12 > 0.05"
    assert items["payments"]["metrics"][0]["value"] == 0.12
    assert items["checkout"]["stage"] == "2/4" and 192 <= items["checkout"]["timeInStageSeconds"] <= 252
    assert items["cart"]["phase"] == "Pending" and items["cart"]["stage"] is None


def test_the_kubectl_plugin_lists_the_same(cluster: Cluster) -> None:
    if not KUBECTL.exists():
        pytest.skip("kubectl is not fetched yet (make tools)")
    populate(cluster)
    bin_dir = Path(featurerollout_command()[0]).parent  # where pip put kubectl-featurerollout
    done = subprocess.run(
        [str(KUBECTL), "featurerollout", "list", "-A"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
             "KUBECONFIG": str(cluster.kubeconfig)},
    )
    assert done.returncode == 0, done.stderr
    assert [line[:3] for line in table_rows(done.stdout)[1:]] == [
        ["search", "ranking", "Paused"], ["shop", "cart", "Pending"], ["shop", "checkout", "Progressing"],
        ["shop", "payments", "RolledBack"]]


def test_an_empty_namespace_says_so_on_stderr(cluster: Cluster) -> None:
    ensure_namespace(cluster, "empty")
    done = run_list(cluster, "-n", "empty")
    assert done.returncode == 0 and done.stdout == ""
    assert "No FeatureRollouts found in namespace empty." in done.stderr
    done = run_list(cluster, "-n", "empty", "-o", "json")
    assert json.loads(done.stdout) == {"items": []}


def test_without_the_crd_it_says_to_install_it(real_apiserver: Path) -> None:
    """(The session's CRDs are put back by the next test's `real_apiserver` fixture.)"""
    require_real()
    extensions = client.ApiextensionsV1Api(_api(real_apiserver))
    extensions.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")

    def gone() -> bool:
        try:
            extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(gone, 60, "the CRD to be deleted")
    done = subprocess.run(featurerollout_command("list", "-A", "--kubeconfig", str(real_apiserver)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: the FeatureRollout CRD ({PLURAL}.{GROUP}) is not installed on this cluster: install it with "
        "`kubectl apply -f crds/` or the Helm chart")
    assert "Traceback" not in done.stderr


def test_without_access_it_says_which_permission_is_missing(real_apiserver: Path, tmp_path: Path) -> None:
    """A ServiceAccount bound to nothing, its token from the TokenRequest API; the real authorizer denies."""
    require_real()
    core = client.CoreV1Api(_api(real_apiserver))
    try:
        core.create_namespaced_service_account("default", client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="nobody")))
    except ApiException as error:
        if error.status != 409:
            raise
    token = control_plane.kubectl(real_apiserver, "create", "token", "nobody", "-n", "default").strip()
    entry = json.loads(real_apiserver.read_text())["clusters"][0]["cluster"]
    nobody = control_plane.write_kubeconfig(tmp_path / "nobody.kubeconfig", entry["server"],
                                            entry["certificate-authority-data"], token)
    done = subprocess.run(featurerollout_command("list", "-n", "shop", "--kubeconfig", str(nobody)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert 'cannot list resource "featurerollouts" in API group "featurerollout.io" in the namespace "shop"' \
        in done.stderr
    assert f"needs the RBAC verb `list` on {PLURAL}.{GROUP} in namespace shop" in done.stderr
    assert "Traceback" not in done.stderr


def _api(kubeconfig: Path) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))
