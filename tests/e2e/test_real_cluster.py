"""The same scenarios on a real cluster (kind, k3d, or any other): opt-in.

    FEATUREROLLOUT_E2E_KUBECONFIG=~/.kube/config .venv/bin/pytest tests/e2e -m e2e

It applies crds/ with the real kubectl, runs the operator from this checkout against the cluster
(so no image needs to be built), and uses a namespace of its own, deleted at the end. Skipped
unless the variable points at a kubeconfig.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import REPO, Process, featurerollout_command, rollout_manifest, wait_until

KUBECONFIG = os.environ.get("FEATUREROLLOUT_E2E_KUBECONFIG")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="set FEATUREROLLOUT_E2E_KUBECONFIG to run against a real cluster"),
]
GROUP, VERSION, PLURAL = "featurerollout.io", "v1alpha1", "featurerollouts"


def kubectl_binary() -> str:
    local = REPO / ".cache" / "bin" / "kubectl"
    return str(local) if local.exists() else (shutil.which("kubectl") or "kubectl")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[client.ApiClient, str]]:
    assert KUBECONFIG is not None
    subprocess.run([kubectl_binary(), "--kubeconfig", KUBECONFIG, "apply", "-f", str(REPO / "crds")], check=True)
    api = config.new_client_from_config(config_file=KUBECONFIG)
    namespace = f"fro-e2e-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    operator = Process(
        featurerollout_command("run", "--kubeconfig", KUBECONFIG, "-n", namespace, "--standalone",
                               "--metrics-port", "0"),
        tmp_path / "operator.log",
    ).start()
    try:
        yield api, namespace
    finally:
        operator.stop()
        client.CoreV1Api(api).delete_namespace(namespace)
        api.close()


def _status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(body.get("status") or {})


def test_rollout_steps_through_its_stages_on_a_real_cluster(cluster: tuple[client.ApiClient, str]) -> None:
    api, namespace = cluster
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "feature-flags"},
                                                  "data": {"flags.flagd.json": '{"flags": {}}'}})
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        rollout_manifest("e2e", namespace, flag="e2e", target={"configMap": {"name": "feature-flags"}},
                         stages=[{"weight": 10, "duration": "2s"}, {"weight": 50, "duration": "2s"},
                                 {"weight": 100}]),
    )
    wait_until(lambda: _status(api, namespace, "e2e").get("phase") == "Succeeded", 60, "Succeeded")
    text = core.read_namespaced_config_map("feature-flags", namespace).data["flags.flagd.json"]
    assert read_flag_weight(text, "e2e") == 100


def test_invalid_rollout_is_refused_by_the_real_api_server(cluster: tuple[client.ApiClient, str]) -> None:
    api, namespace = cluster
    bad = rollout_manifest("bad", namespace, flag="bad", target={"configMap": {"name": "feature-flags"}},
                           stages=[{"weight": 10}, {"weight": 50}, {"weight": 40}, {"weight": 100}])
    with pytest.raises(client.exceptions.ApiException) as refused:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, bad)
    assert refused.value.status == 422
    assert "stage weights must be strictly increasing" in str(refused.value.body)
