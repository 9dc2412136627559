"""The real kubectl 1.37 against the sandbox and the real kube-apiserver, with no extra flags."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from featurerollout_sandbox.children import spawn
from featurerollout_sandbox.server import Sandbox

from .fixtures import CANARY_CRD, REPO, Kubectl, require_kubectl, wait_for

SHOP_ROLLOUTS = "/apis/featurerollout.io/v1alpha1/namespaces/shop/featurerollouts"
SHOP_NAMESPACE = '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}'
INVALID_ROLLOUT = """
apiVersion: featurerollout.io/v1alpha1
kind: FeatureRollout
metadata: {name: bad, namespace: shop}
spec:
  flag: bad
  target: {configMap: {name: feature-flags}}
  stages: [{weight: 10, duration: 1m}, {weight: 50, duration: 1m}, {weight: 40, duration: 1m}, {weight: 100}]
"""


@pytest.fixture
def shop(kubectl: Kubectl) -> Kubectl:
    """kubectl, with the `shop` namespace the examples use and its feature-flags ConfigMap."""
    kubectl.run("apply", "-f", "-", stdin=SHOP_NAMESPACE)  # idempotent: a real server keeps namespaces
    kubectl.run("create", "configmap", "feature-flags", "-n", "shop", "--from-literal=flags.flagd.json={}")
    return kubectl


def test_kubectl_creates_namespaces_configmaps_and_secrets(kubectl: Kubectl, api: httpx.Client) -> None:
    # kubectl's typed clients send these as protobuf
    kubectl.run("create", "namespace", "team")
    kubectl.run("create", "configmap", "c", "-n", "team", "--from-literal=a=b")
    kubectl.run("create", "secret", "generic", "s", "-n", "team", "--from-literal=user=admin")
    assert api.get("/api/v1/namespaces/team/configmaps/c").json()["data"] == {"a": "b"}
    assert api.get("/api/v1/namespaces/team/secrets/s").json()["data"] == {"user": "YWRtaW4="}
    out = kubectl.run("get", "configmaps,secrets", "-n", "team").stdout
    assert "configmap/c" in out and "secret/s" in out and "DATA" in out


def test_kubectl_apply_get_columns_and_json(shop: Kubectl) -> None:
    applied = shop.run("apply", "-f", str(REPO / "examples")).stdout
    assert "featurerollout.featurerollout.io/new-checkout created" in applied
    assert "unchanged" in shop.run("apply", "-f", str(REPO / "examples")).stdout
    table = shop.run("get", "featurerollouts", "-n", "shop").stdout.splitlines()
    assert table[0].split() == ["NAME", "FLAG", "PHASE", "WEIGHT", "STAGE", "AGE"]
    assert table[1].split()[:2] == ["dark-mode", "dark-mode"]
    wide = shop.run("get", "fro", "-n", "shop", "-o", "wide").stdout
    assert "MESSAGE" in wide.splitlines()[0]
    listing = json.loads(shop.run("get", "fro", "-n", "shop", "-o", "json").stdout)
    assert {i["metadata"]["name"] for i in listing["items"]} >= {"dark-mode", "new-checkout"}
    dark = next(i for i in listing["items"] if i["metadata"]["name"] == "dark-mode")
    assert [s["weight"] for s in dark["spec"]["stages"]] == [10, 25, 50, 100]  # defaulted by the schema


def test_kubectl_apply_of_a_changed_manifest_patches(shop: Kubectl, api: httpx.Client) -> None:
    manifest = (REPO / "examples" / "minimal.yaml").read_text()
    shop.run("apply", "-f", "-", stdin=manifest)
    out = shop.run("apply", "-f", "-", stdin=manifest + "  paused: true\n").stdout
    assert "configured" in out
    assert api.get(f"{SHOP_ROLLOUTS}/dark-mode").json()["spec"]["paused"] is True
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {a: '1', b: '2'}\n"
    shop.run("apply", "-f", "-", stdin=cm)
    shop.run("apply", "-f", "-", stdin=cm.replace(", b: '2'", ""))  # strategic merge patch drops b
    assert api.get("/api/v1/namespaces/shop/configmaps/c").json()["data"] == {"a": "1"}


def test_kubectl_apply_of_an_invalid_featurerollout_fails_with_the_cel_message(shop: Kubectl) -> None:
    done = shop.run("apply", "-f", "-", stdin=INVALID_ROLLOUT, check=False)
    assert done.returncode != 0
    assert 'spec.stages: Invalid value: stage weights must be strictly increasing' in done.stderr


def test_kubectl_apply_of_a_schema_violation_fails_with_the_schema_message(shop: Kubectl) -> None:
    bad = INVALID_ROLLOUT.replace("{weight: 40, duration: 1m}, ", "").replace("1m}", "soon}", 1)
    done = shop.run("apply", "-f", "-", stdin=bad, check=False)
    assert done.returncode != 0 and "spec.stages[0].duration" in done.stderr and "should match" in done.stderr


def test_kubectl_apply_refuses_unknown_fields(shop: Kubectl) -> None:
    manifest = (REPO / "examples" / "minimal.yaml").read_text() + "  colour: blue\n"
    done = shop.run("apply", "-f", "-", stdin=manifest, check=False)
    assert done.returncode != 0 and 'unknown field "spec.colour"' in done.stderr


def test_kubectl_apply_server_side(shop: Kubectl, api: httpx.Client) -> None:
    out = shop.run("apply", "--server-side", "-f", str(REPO / "examples" / "minimal.yaml")).stdout
    assert "serverside-applied" in out
    assert api.get(f"{SHOP_ROLLOUTS}/dark-mode").status_code == 200


def test_kubectl_patch_merge_json_and_status(shop: Kubectl, api: httpx.Client) -> None:
    shop.run("apply", "-f", str(REPO / "examples" / "minimal.yaml"))
    shop.run("patch", "fro", "dark-mode", "-n", "shop", "--type=merge", "-p", '{"spec":{"paused":true}}')
    shop.run("patch", "fro", "dark-mode", "-n", "shop", "--type=json",
             "-p", '[{"op":"add","path":"/metadata/labels","value":{"team":"web"}}]')
    shop.run("patch", "fro", "dark-mode", "-n", "shop", "--subresource=status", "--type=merge",
             "-p", '{"status":{"phase":"Progressing","currentWeight":25,"stage":"2/4"}}')
    obj = api.get(f"{SHOP_ROLLOUTS}/dark-mode").json()
    assert obj["spec"]["paused"] is True and obj["metadata"]["labels"] == {"team": "web"}
    assert obj["status"]["phase"] == "Progressing"
    row = shop.run("get", "fro", "dark-mode", "-n", "shop", "--no-headers").stdout.split()
    assert row[:5] == ["dark-mode", "dark-mode", "Progressing", "25", "2/4"]
    done = shop.run("patch", "fro", "dark-mode", "-n", "shop", "--subresource=status", "--type=merge",
                    "-p", '{"status":{"phase":"Sideways"}}', check=False)
    assert done.returncode != 0 and "status.phase" in done.stderr


def test_kubectl_wait_for_jsonpath(shop: Kubectl, api: httpx.Client) -> None:
    shop.run("apply", "-f", str(REPO / "examples" / "minimal.yaml"))
    waiter = spawn(
        [str(shop.binary), "wait", "fro/dark-mode", "-n", "shop", "--for=jsonpath={.status.phase}=Succeeded",
         "--timeout=20s"], env=shop.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # kubectl reads (a list, or since 1.35 a watch that streams the initial state), then watches:
        # a change made after it read is seen. Only the sandbox can say when it has read.
        if api.get("/sandbox/requests").status_code == 200:
            wait_for(lambda: any(r["verb"] in ("list", "watch") and r["resource"] == "featurerollouts" and
                                 r["user_agent"].startswith("kubectl") for r in _records(api)), 10,
                     what="kubectl to read the rollouts")
        api.patch(f"{SHOP_ROLLOUTS}/dark-mode/status", json={"status": {"phase": "Succeeded"}},
                  headers={"Content-Type": "application/merge-patch+json"})
        out, err = waiter.communicate(timeout=20)
        assert waiter.returncode == 0, err
        assert "condition met" in out
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def _records(api: httpx.Client) -> list[dict[str, str]]:
    records: list[dict[str, str]] = api.get("/sandbox/requests").json()["requests"]
    return records


def test_kubectl_explain_prints_field_docs(kubectl: Kubectl) -> None:
    out = kubectl.run("explain", "featurerollout.spec.stages").stdout
    assert "KIND:       FeatureRollout" in out and "FIELD: stages <[]Object>" in out
    assert "weight\t<number> -required-" in out and "Percent of users" in out


def test_kubectl_describe_shows_events(shop: Kubectl, api: httpx.Client) -> None:
    shop.run("apply", "-f", str(REPO / "examples" / "minimal.yaml"))
    uid = api.get(f"{SHOP_ROLLOUTS}/dark-mode").json()["metadata"]["uid"]
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "dark-mode.1", "namespace": "shop"},
             "involvedObject": {"apiVersion": "featurerollout.io/v1alpha1", "kind": "FeatureRollout",
                                "name": "dark-mode", "namespace": "shop", "uid": uid},
             "reason": "RolledBack", "message": "error-rate 0.05 > 0.01", "type": "Warning", "count": 1,
             "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
             "source": {"component": "featurerollout"}}
    assert api.post("/api/v1/namespaces/shop/events", json=event).status_code == 201
    out = shop.run("describe", "featurerollout", "dark-mode", "-n", "shop").stdout
    assert "Name:         dark-mode" in out and "Flag:" in out
    assert "RolledBack" in out and "error-rate 0.05 > 0.01" in out


def test_kubectl_delete_waits_for_finalizers(shop: Kubectl, api: httpx.Client) -> None:
    shop.run("apply", "-f", str(REPO / "examples" / "minimal.yaml"))
    api.patch(f"{SHOP_ROLLOUTS}/dark-mode", json={"metadata": {"finalizers": ["featurerollout.io/cleanup"]}},
              headers={"Content-Type": "application/merge-patch+json"})
    deleter = spawn([str(shop.binary), "delete", "fro", "dark-mode", "-n", "shop", "--timeout=20s"],
                               env=shop.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: api.get(f"{SHOP_ROLLOUTS}/dark-mode").json()["metadata"].get("deletionTimestamp"), 10,
                 what="the deletionTimestamp")
        assert deleter.poll() is None  # kubectl waits for the finalizer
        api.patch(f"{SHOP_ROLLOUTS}/dark-mode", json={"metadata": {"finalizers": None}},
                  headers={"Content-Type": "application/merge-patch+json"})
        out, err = deleter.communicate(timeout=20)
        assert deleter.returncode == 0, err
        assert 'featurerollout.featurerollout.io "dark-mode" deleted' in out
    finally:
        if deleter.poll() is None:
            deleter.kill()
            deleter.wait()
    assert api.get(f"{SHOP_ROLLOUTS}/dark-mode").status_code == 404


@pytest.fixture
def bare_sandbox(tmp_path: Path) -> Iterator[tuple[Sandbox, Kubectl]]:
    """A sandbox that serves no CRD at start."""
    binary = require_kubectl()
    empty = tmp_path / "no-crds"
    empty.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    with Sandbox(crd_dir=empty) as running:
        yield running, Kubectl(binary, running.write_kubeconfig(tmp_path / "kubeconfig"), home)


def test_kubectl_apply_crds_at_runtime_then_custom_resources(bare_sandbox: tuple[Sandbox, Kubectl]) -> None:
    _, kubectl = bare_sandbox
    assert kubectl.run("get", "featurerollouts", check=False).returncode != 0
    kubectl.run("apply", "-f", str(REPO / "crds"))
    kubectl.run("apply", "-f", str(CANARY_CRD))
    kubectl.run("wait", "--for=condition=Established", "crd/featurerollouts.featurerollout.io", "--timeout=10s")
    kubectl.run("create", "namespace", "shop")
    kubectl.run("apply", "-f", str(REPO / "examples"))
    assert "dark-mode" in kubectl.run("get", "fro", "-A").stdout
    out = kubectl.run("get", "crds").stdout
    assert "featurerollouts.featurerollout.io" in out and "canaries.sandbox.featurerollout.io" in out


def test_kubectl_get_watch_prints_table_rows_as_objects_change(kubectl: Kubectl, api: httpx.Client) -> None:
    api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "first"}, "data": {"a": "1"}})
    watcher = spawn([str(kubectl.binary), "get", "configmaps", "-w"], env=kubectl.env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert watcher.stdout is not None
    stdout = watcher.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(line.startswith("first") for line in lines), 10, what="the initial row")
        api.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "second"}, "data": {}})
        wait_for(lambda: any(line.split()[:2] == ["second", "0"] for line in lines), 10, what="the live row")
        assert lines[0].split() == ["NAME", "DATA", "AGE"]
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(5)
        stdout.close()
