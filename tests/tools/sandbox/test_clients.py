"""Real clients against the sandbox: the `kubernetes` Python client, and a Kopf operator process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from featurerollout_sandbox.children import spawn
from featurerollout_sandbox.server import Sandbox

from .fixtures import REPO, SandboxProcess, wait_for

HERE = Path(__file__).resolve().parent


@pytest.fixture
def k8s(sandbox: Sandbox, tmp_path: Path) -> Iterator[kubernetes.client.ApiClient]:
    """A kubernetes ApiClient configured from the sandbox's kubeconfig."""
    kubeconfig = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _configmap(name: str, labels: dict[str, str] | None = None) -> kubernetes.client.V1ConfigMap:
    return kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name=name, labels=labels),
                                         data={"k": "v"})


def test_python_client_creates_and_lists_with_selectors(k8s: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespaced_config_map("default", _configmap("a", {"app": "x"}))
    core.create_namespaced_config_map("default", _configmap("b", {"app": "y"}))
    listed = core.list_namespaced_config_map("default", label_selector="app=x")
    assert [i.metadata.name for i in listed.items] == ["a"]
    assert int(listed.metadata.resource_version) > 0
    with pytest.raises(ApiException) as conflict:
        core.create_namespaced_config_map("default", _configmap("a"))
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("zzz", "default")
    assert missing.value.status == 404
    core.delete_namespaced_config_map("b", "default")
    assert [i.metadata.name for i in core.list_config_map_for_all_namespaces().items] == ["a"]


def test_python_client_custom_objects_and_status(k8s: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s)
    group, version, plural = "sandbox.featurerollout.io", "v1", "canaries"
    body = {"apiVersion": f"{group}/{version}", "kind": "Canary", "metadata": {"name": "c"},
            "spec": {"flag": "f"}}
    created = custom.create_namespaced_custom_object(group, version, "default", plural, body)
    assert created["spec"]["stages"][-1]["weight"] == 100
    custom.patch_namespaced_custom_object_status(group, version, "default", plural, "c",
                                                 {"status": {"phase": "Succeeded"}})
    assert custom.get_namespaced_custom_object(group, version, "default", plural, "c")["status"]["phase"] == (
        "Succeeded")
    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(group, version, "default", plural,
                                               {**body, "metadata": {"name": "d"}, "spec": {"flag": "-"}})
    assert invalid.value.status == 422


def test_python_client_watch_from_a_resource_version(k8s: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _configmap("w"))
    core.patch_namespaced_config_map("w", "default", {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("w", "default")
    seen = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(core.list_namespaced_config_map, "default", resource_version=start,
                              timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            watch.stop()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_python_client_watch_of_an_expired_resource_version_raises_410(
    k8s: kubernetes.client.ApiClient, sandbox: Sandbox
) -> None:
    sandbox.set_history_limit(1)
    core = kubernetes.client.CoreV1Api(k8s)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _configmap("x"))
    core.create_namespaced_config_map("default", _configmap("y"))
    watch = kubernetes.watch.Watch()
    with pytest.raises(ApiException) as gone:
        for _ in watch.stream(core.list_namespaced_config_map, "default", resource_version=start,
                              timeout_seconds=5):
            pass
    assert gone.value.status == 410


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_kopf_operator_against_the_sandbox_process(tmp_path: Path) -> None:
    log = tmp_path / "handlers.log"
    with SandboxProcess(tmp_path) as sandbox, httpx.Client(base_url=sandbox.url, timeout=10) as api:
        env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig), "KOPF_TEST_LOG": str(log)}
        with open(tmp_path / "kopf.out", "wb") as output:
            operator = spawn(
                [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", "default",
                 str(HERE / "kopf_operator.py")],
                env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        try:
            canaries = "/apis/sandbox.featurerollout.io/v1/namespaces/default/canaries"
            body = {"apiVersion": "sandbox.featurerollout.io/v1", "kind": "Canary", "metadata": {"name": "k"},
                    "spec": {"flag": "f"}}
            assert api.post(canaries, json=body).status_code == 201

            def progressed() -> bool:
                obj = api.get(f"{canaries}/k").json()
                status = obj.get("status", {})
                return status.get("phase") == "Progressing" and status.get("currentStage", 0) >= 3

            wait_for(progressed, 30, what="the create handler's and the timer's status patches")
            obj = api.get(f"{canaries}/k").json()
            assert "sandbox.featurerollout.io/test-finalizer" in obj["metadata"]["finalizers"]
            assert _lines(log).count("create k") == 1
            assert sandbox.control.count(verb="patch", resource="canaries", status=500) == 0

            assert api.delete(f"{canaries}/k").status_code == 200
            wait_for(lambda: api.get(f"{canaries}/k").status_code == 404, 30, what="the finalizer to be released")
            assert _lines(log).count("delete k") == 1
            assert _lines(log).count("create k") == 1  # exactly once, all along
            assert sandbox.control.count(verb="patch", resource="canaries", status=422) == 0

            def posted() -> bool:  # Kopf posts its events in the background
                events = api.get("/api/v1/namespaces/default/events").json()["items"]
                return any(e["involvedObject"]["name"] == "k" and e["reason"] == "Started" for e in events)

            wait_for(posted, 15, what="Kopf's events")
        finally:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
