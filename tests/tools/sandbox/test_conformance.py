"""One named test per semantic of the sandbox, against the in-process server over plain HTTP.

Where kube-apiserver's behaviour is the reference, the test says so; docs/sandbox.md lists
where the sandbox simplifies.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from featurerollout_sandbox.client import SandboxControl
from featurerollout_sandbox.server import Sandbox

from .fixtures import CANARY_CRD, REPO, wait_for

Json = dict[str, Any]
CANARIES = "/apis/sandbox.featurerollout.io/v1/namespaces/default/canaries"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
ROLLOUTS = "/apis/featurerollout.io/v1alpha1/namespaces/default/featurerollouts"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def canary(name: str = "c1", **spec: Any) -> Json:
    body: Json = {"flag": "new-checkout", **spec}
    return {"apiVersion": "sandbox.featurerollout.io/v1", "kind": "Canary", "metadata": {"name": name},
            "spec": body}


def configmap(name: str = "cm1", labels: dict[str, str] | None = None, namespace: str = "default") -> Json:
    meta: Json = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def create(api: httpx.Client, path: str, body: Json, status: int = 201) -> Json:
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    result: Json = response.json()
    return result


def ensure_namespace(api: httpx.Client, name: str) -> None:
    """Create a namespace unless it exists: the real server's namespaces outlive a test (with no
    namespace controller, a deleted one would stay Terminating), the sandbox's do not."""
    response = api.post("/api/v1/namespaces", json={"metadata": {"name": name}})
    assert response.status_code in (201, 409), response.text


def rv(obj: Json) -> int:
    return int(obj["metadata"]["resourceVersion"])


def assert_status(response: httpx.Response, code: int, reason: str) -> Json:
    assert response.status_code == code, response.text
    body: Json = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason and body["message"]
    return body


def invalid_causes(response: httpx.Response) -> list[Json]:
    body = assert_status(response, 422, "Invalid")
    causes: list[Json] = body["details"]["causes"]
    return causes


def watch_events(api: httpx.Client, path: str, count: int, **params: Any) -> list[Json]:
    """The first `count` events of a watch (the stream ends by timeoutSeconds at the latest)."""
    params = {"watch": "true", "timeoutSeconds": "5", **params}
    events: list[Json] = []
    with api.stream("GET", path, params=params) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


# ------------------------------------------------------------------------------------ discovery


def test_version_endpoint(api: httpx.Client) -> None:
    body = api.get("/version").json()
    assert body["major"] == "1" and body["minor"] == "37" and body["gitVersion"].startswith("v1.37")


def test_discovery_core_group_lists_builtin_kinds(api: httpx.Client) -> None:
    assert api.get("/api").json()["versions"] == ["v1"]
    resources = {r["name"]: r for r in api.get("/api/v1").json()["resources"]}
    assert {"namespaces", "configmaps", "secrets", "events", "namespaces/status"} <= set(resources)
    assert resources["configmaps"]["namespaced"] and not resources["namespaces"]["namespaced"]
    assert "watch" in resources["configmaps"]["verbs"] and resources["configmaps"]["shortNames"] == ["cm"]


def test_discovery_apis_lists_builtin_and_crd_groups(api: httpx.Client) -> None:
    groups = {g["name"]: g for g in api.get("/apis").json()["groups"]}
    assert {"events.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io", "featurerollout.io",
            "sandbox.featurerollout.io", "core.openfeature.dev", "gateway.networking.k8s.io"} <= set(groups)
    assert groups["featurerollout.io"]["preferredVersion"]["version"] == "v1alpha1"
    assert api.get("/apis/coordination.k8s.io").json()["kind"] == "APIGroup"


def test_discovery_group_version_lists_status_subresource_and_short_names(api: httpx.Client) -> None:
    listing = api.get("/apis/featurerollout.io/v1alpha1").json()
    resources = {r["name"]: r for r in listing["resources"]}
    assert listing["groupVersion"] == "featurerollout.io/v1alpha1"
    assert resources["featurerollouts"]["kind"] == "FeatureRollout"
    assert resources["featurerollouts"]["shortNames"] == ["fro"]
    assert "featurerollouts/status" in resources
    assert api.get("/apis/featurerollout.io/v9").status_code == 404


def test_crds_from_the_crd_dir_are_served(api: httpx.Client) -> None:
    assert api.get(ROLLOUTS).status_code == 200
    crd = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/featurerollouts.featurerollout.io")
    conditions = {c["type"]: c["status"] for c in crd.json()["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


def test_without_a_crd_dir_only_the_crds_given_are_served() -> None:
    with Sandbox(crd_paths=[CANARY_CRD]) as other, httpx.Client(base_url=other.url) as client:
        assert client.get(ROLLOUTS).status_code == 404
        assert client.get(CANARIES).status_code == 200


def test_crd_created_at_runtime_is_served_and_deleting_it_removes_the_resource(api: httpx.Client) -> None:
    crd = yaml.safe_load((REPO / "tests/fixtures/crds/canaries.yaml").read_text())
    crd["metadata"]["name"] = "widgets.runtime.example.com"
    crd["spec"]["group"] = "runtime.example.com"
    crd["spec"]["names"] = {"kind": "Widget", "plural": "widgets", "singular": "widget"}
    create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    # kube-apiserver serves a new CRD once it is Established, a moment later; the sandbox at once.
    wait_for(lambda: "runtime.example.com" in {g["name"] for g in api.get("/apis").json()["groups"]}, 30,
             what="the group in discovery")
    widgets = "/apis/runtime.example.com/v1/namespaces/default/widgets"
    body = {"apiVersion": "runtime.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"flag": "x"}}
    widget = wait_for(lambda: (r := api.post(widgets, json=body)).status_code == 201 and r.json(), 30,
                      what="the first widget to be created")
    assert widget["spec"]["onNoData"] == "Hold"  # its schema (and defaults) apply at once
    assert api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.runtime.example.com"
                      ).status_code == 200
    # kube-apiserver removes the CRD's instances and then its endpoint asynchronously (a finalizer).
    wait_for(lambda: api.get(widgets).status_code == 404, 30, what="the widgets endpoint to go")
    wait_for(lambda: "runtime.example.com" not in {g["name"] for g in api.get("/apis").json()["groups"]}, 30,
             what="the group to leave discovery")


def test_crd_with_a_rule_that_does_not_compile_is_refused(api: httpx.Client) -> None:
    crd = yaml.safe_load((REPO / "tests/fixtures/crds/canaries.yaml").read_text())
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.flag ==", "message": "broken"}
    ]
    api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/canaries.sandbox.featurerollout.io")
    response = api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    causes = invalid_causes(response)
    assert "x-kubernetes-validations[0].rule" in causes[0]["field"]


# -------------------------------------------------------------------------------------- openapi


def test_openapi_v3_serves_schemas_and_the_field_validation_parameter(api: httpx.Client) -> None:
    index = api.get("/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/featurerollout.io/v1alpha1"} <= set(index)
    url = index["apis/featurerollout.io/v1alpha1"]["serverRelativeURL"]
    assert "?hash=" in url
    document = api.get(url).json()
    schema = document["components"]["schemas"]["io.featurerollout.v1alpha1.FeatureRollout"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "featurerollout.io", "kind": "FeatureRollout", "version": "v1alpha1"}]
    assert schema["properties"]["spec"]["properties"]["stages"]["description"]
    item = document["paths"]["/apis/featurerollout.io/v1alpha1/namespaces/{namespace}/featurerollouts/{name}"]
    assert "fieldValidation" in {p["name"] for p in item["patch"]["parameters"]}
    assert api.get("/openapi/v3/apis/nothing/v1").status_code == 404


# -------------------------------------------------------------------------------------- objects


def test_default_and_kube_system_namespaces_exist_at_start(api: httpx.Client) -> None:
    names = {n["metadata"]["name"] for n in api.get("/api/v1/namespaces").json()["items"]}
    assert {"default", "kube-system"} <= names
    assert api.get("/api/v1/namespaces/default").json()["status"]["phase"] == "Active"


def test_create_sets_uid_creation_timestamp_and_resource_version(api: httpx.Client) -> None:
    obj = create(api, CANARIES, canary())
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z") and rv(obj) > 0
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert api.get(f"{CANARIES}/c1").json() == obj


def test_generate_name_makes_a_unique_name(api: httpx.Client) -> None:
    body = configmap()
    body["metadata"] = {"generateName": "cm-"}
    first, second = create(api, CONFIGMAPS, body), create(api, CONFIGMAPS, body)
    assert first["metadata"]["name"].startswith("cm-") and first["metadata"]["name"] != second["metadata"]["name"]


def test_resource_version_increases_cluster_wide(api: httpx.Client) -> None:
    a = create(api, CONFIGMAPS, configmap("a"))
    b = create(api, CANARIES, canary("b"))
    c = api.patch(f"{CONFIGMAPS}/a", json={"data": {"x": "y"}}, headers=MERGE).json()
    assert rv(a) < rv(b) < rv(c)
    assert int(api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]) >= rv(c)


def test_generation_bumps_on_spec_changes_only(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    labelled = api.patch(f"{CANARIES}/c1", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE).json()
    assert labelled["metadata"]["generation"] == 1
    status = api.patch(f"{CANARIES}/c1/status", json={"status": {"phase": "Pending"}}, headers=MERGE).json()
    assert status["metadata"]["generation"] == 1
    changed = api.patch(f"{CANARIES}/c1", json={"spec": {"paused": True}}, headers=MERGE).json()
    assert changed["metadata"]["generation"] == 2


def test_builtin_configmap_keeps_generation_unset(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    patched = api.patch(f"{CONFIGMAPS}/cm1", json={"data": {"k": "w"}}, headers=MERGE).json()
    assert "generation" not in patched["metadata"]  # as kube-apiserver: ConfigMaps have no generation


def test_no_op_write_keeps_the_resource_version(api: httpx.Client) -> None:
    obj = create(api, CONFIGMAPS, configmap())
    same = api.patch(f"{CONFIGMAPS}/cm1", json={"data": {"k": "v"}}, headers=MERGE).json()
    assert rv(same) == rv(obj)


def test_create_existing_is_409_already_exists(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    body = assert_status(api.post(CANARIES, json=canary()), 409, "AlreadyExists")
    assert body["message"] == 'canaries.sandbox.featurerollout.io "c1" already exists'
    assert body["details"] == {"name": "c1", "group": "sandbox.featurerollout.io", "kind": "canaries"}


def test_get_missing_is_404_not_found(api: httpx.Client) -> None:
    body = assert_status(api.get(f"{CONFIGMAPS}/nope"), 404, "NotFound")
    assert body["message"] == 'configmaps "nope" not found'
    # An unknown group: kube-apiserver answers a plain-text 404 (no Status body); the sandbox a Status.
    assert api.get("/apis/nothing.example.com/v1/things").status_code == 404


def test_create_in_missing_namespace_is_404_for_the_namespace(api: httpx.Client) -> None:
    response = api.post("/api/v1/namespaces/nowhere/configmaps", json=configmap(namespace="nowhere"))
    assert assert_status(response, 404, "NotFound")["message"] == 'namespaces "nowhere" not found'


def test_namespace_mismatch_between_body_and_path_is_400(api: httpx.Client) -> None:
    assert_status(api.post(CONFIGMAPS, json=configmap(namespace="kube-system")), 400, "BadRequest")


def test_invalid_name_is_422(api: httpx.Client) -> None:
    causes = invalid_causes(api.post(CONFIGMAPS, json=configmap("Not_A_Name")))
    assert causes[0]["field"] == "metadata.name"


def test_list_across_all_namespaces_and_per_namespace(api: httpx.Client) -> None:
    ensure_namespace(api, "shop")
    create(api, CONFIGMAPS, configmap("here"))
    create(api, "/api/v1/namespaces/shop/configmaps", configmap("there", namespace="shop"))
    everywhere = api.get("/api/v1/configmaps").json()
    assert everywhere["kind"] == "ConfigMapList"
    # (a real server also keeps a ConfigMap of its own in kube-system)
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere["items"]
            if o["metadata"]["namespace"] != "kube-system"} == {("default", "here"), ("shop", "there")}
    assert [o["metadata"]["name"] for o in api.get("/api/v1/namespaces/shop/configmaps").json()["items"]] == [
        "there"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"a"}),
        ("tier==web", {"a"}),
        ("tier!=web", {"b", "c"}),
        ("tier in (web,db)", {"a", "b"}),
        ("tier notin (web)", {"b", "c"}),
        ("tier", {"a", "b"}),
        ("!tier", {"c"}),
        ("tier=web,env=prod", {"a"}),
        ("tier in (web, db),env!=prod", {"b"}),
    ],
)
def test_list_label_selector(api: httpx.Client, selector: str, expected: set[str]) -> None:
    create(api, CONFIGMAPS, configmap("a", {"tier": "web", "env": "prod"}))
    create(api, CONFIGMAPS, configmap("b", {"tier": "db"}))
    create(api, CONFIGMAPS, configmap("c", {"other": "x"}))
    items = api.get(CONFIGMAPS, params={"labelSelector": selector}).json()["items"]
    assert {o["metadata"]["name"] for o in items} == expected


def test_malformed_label_selector_is_400(api: httpx.Client) -> None:
    assert_status(api.get(CONFIGMAPS, params={"labelSelector": "a in b"}), 400, "BadRequest")


def test_list_field_selector_on_name_and_namespace(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap("a"))
    create(api, CONFIGMAPS, configmap("b"))
    by_name = api.get(CONFIGMAPS, params={"fieldSelector": "metadata.name=b"}).json()["items"]
    assert [o["metadata"]["name"] for o in by_name] == ["b"]
    not_a = api.get("/api/v1/configmaps", params={"fieldSelector": "metadata.namespace=default,metadata.name!=a"})
    assert [o["metadata"]["name"] for o in not_a.json()["items"]] == ["b"]
    assert_status(api.get(CONFIGMAPS, params={"fieldSelector": "data.k=v"}), 400, "BadRequest")


def test_put_with_stale_resource_version_is_409(api: httpx.Client) -> None:
    obj = create(api, CONFIGMAPS, configmap())
    fresh = dict(obj, data={"k": "fresh"})
    assert api.put(f"{CONFIGMAPS}/cm1", json=fresh).status_code == 200
    stale = dict(obj, data={"k": "stale"})
    body = assert_status(api.put(f"{CONFIGMAPS}/cm1", json=stale), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert api.get(f"{CONFIGMAPS}/cm1").json()["data"] == {"k": "fresh"}


def test_put_of_a_custom_resource_without_resource_version_is_422(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    causes = invalid_causes(api.put(f"{CANARIES}/c1", json=canary()))
    assert causes[0]["field"] == "metadata.resourceVersion"  # built-ins allow unconditional updates
    assert api.put(f"{CONFIGMAPS}/cm1", json=configmap()).status_code == 404


def test_put_of_a_missing_object_is_404(api: httpx.Client) -> None:
    assert_status(api.put(f"{CONFIGMAPS}/cm1", json=configmap()), 404, "NotFound")


def test_merge_patch(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    patched = api.patch(f"{CONFIGMAPS}/cm1", json={"data": {"k": None, "n": "1"}}, headers=MERGE).json()
    assert patched["data"] == {"n": "1"}


def test_merge_patch_with_stale_resource_version_is_409(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    response = api.patch(f"{CONFIGMAPS}/cm1", json={"metadata": {"resourceVersion": "1"}, "data": {}},
                         headers=MERGE)
    assert_status(response, 409, "Conflict")


def test_json_patch(api: httpx.Client) -> None:
    obj = create(api, CANARIES, canary())
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]},
           {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]},
           {"op": "replace", "path": "/spec/replicas", "value": 3}]
    patched = api.patch(f"{CANARIES}/c1", content=json.dumps(ops), headers=JSON_PATCH).json()
    assert patched["metadata"]["finalizers"] == ["example.com/f"] and patched["spec"]["replicas"] == 3


def test_json_patch_failed_test_op_is_422(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]}]
    assert_status(api.patch(f"{CANARIES}/c1", content=json.dumps(ops), headers=JSON_PATCH), 422, "Invalid")
    assert "finalizers" not in api.get(f"{CANARIES}/c1").json()["metadata"]


def test_strategic_merge_patch_on_builtins(api: httpx.Client) -> None:
    body = configmap()
    body["metadata"]["finalizers"] = ["a/one"]
    create(api, CONFIGMAPS, body)
    patch = {"metadata": {"finalizers": ["b/two"], "labels": {"x": "y"}}, "data": {"$patch": "replace", "n": "1"}}
    patched = api.patch(f"{CONFIGMAPS}/cm1", json=patch, headers=STRATEGIC).json()
    assert patched["metadata"]["finalizers"] == ["b/two", "a/one"]  # merged (the patch's first), not replaced
    assert patched["data"] == {"n": "1"}  # $patch: replace
    removed = api.patch(f"{CONFIGMAPS}/cm1", json={"$deleteFromPrimitiveList/finalizers": ["a/one"]},
                        headers=STRATEGIC)
    assert removed.status_code == 200


def test_strategic_merge_patch_on_custom_resources_is_415(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    assert_status(api.patch(f"{CANARIES}/c1", json={"spec": {}}, headers=STRATEGIC), 415, "UnsupportedMediaType")


def test_server_side_apply_creates_then_merges(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/apply-patch+yaml"}
    manifest = yaml.safe_dump(canary())
    created = api.patch(f"{CANARIES}/c1", params={"fieldManager": "t"}, content=manifest, headers=headers)
    assert created.status_code == 201 or created.status_code == 200, created.text
    updated = api.patch(f"{CANARIES}/c1", params={"fieldManager": "t"},
                        content=yaml.safe_dump(canary(paused=True)), headers=headers).json()
    assert updated["spec"]["paused"] is True
    assert_status(api.patch(f"{CANARIES}/c1", content=manifest, headers=headers), 422, "Invalid")


def test_delete_with_finalizers_sets_deletion_timestamp_then_removes(api: httpx.Client) -> None:
    body = canary()
    body["metadata"]["finalizers"] = ["example.com/f"]
    create(api, CANARIES, body)
    deleting = api.delete(f"{CANARIES}/c1").json()
    assert deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 0
    assert api.get(f"{CANARIES}/c1").status_code == 200
    gone = api.patch(f"{CANARIES}/c1", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert gone.status_code == 200
    assert api.get(f"{CANARIES}/c1").status_code == 404


def test_delete_without_finalizers_removes_at_once(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    response = api.delete(f"{CONFIGMAPS}/cm1")
    assert response.json()["status"] == "Success"
    assert api.get(f"{CONFIGMAPS}/cm1").status_code == 404
    assert_status(api.delete(f"{CONFIGMAPS}/cm1"), 404, "NotFound")


def test_delete_precondition_mismatch_is_409(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    response = api.request("DELETE", f"{CONFIGMAPS}/cm1", json={"preconditions": {"resourceVersion": "1"}})
    assert_status(response, 409, "Conflict")


@pytest.mark.sandbox_only("needs kube-controller-manager's namespace controller, which the real tier does not run")
def test_delete_namespace_deletes_its_objects(api: httpx.Client) -> None:
    create(api, "/api/v1/namespaces", {"metadata": {"name": "shop"}})
    create(api, "/api/v1/namespaces/shop/configmaps", configmap("x", namespace="shop"))
    api.delete("/api/v1/namespaces/shop")
    assert api.get("/api/v1/namespaces/shop/configmaps/x").status_code == 404


def test_delete_collection_by_label(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap("a", {"x": "1"}))
    create(api, CONFIGMAPS, configmap("b"))
    assert api.delete(CONFIGMAPS, params={"labelSelector": "x=1"}).status_code == 200
    assert [o["metadata"]["name"] for o in api.get(CONFIGMAPS).json()["items"]] == ["b"]


def test_dry_run_does_not_store(api: httpx.Client) -> None:
    assert api.post(CONFIGMAPS, params={"dryRun": "All"}, json=configmap()).status_code == 201
    assert api.get(f"{CONFIGMAPS}/cm1").status_code == 404


# ----------------------------------------------------------------------------- status subresource


def test_status_subresource_writes_only_status(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    body = api.get(f"{CANARIES}/c1").json()
    body["status"] = {"phase": "Progressing", "currentWeight": 25}
    body["spec"]["paused"] = True
    updated = api.put(f"{CANARIES}/c1/status", json=body).json()
    assert updated["status"] == {"phase": "Progressing", "currentWeight": 25}
    assert updated["spec"]["paused"] is False
    patched = api.patch(f"{CANARIES}/c1/status", json={"status": {"currentStage": 1}, "spec": {"replicas": 5}},
                        headers=MERGE).json()
    assert patched["status"]["currentStage"] == 1 and patched["spec"]["replicas"] == 1


def test_main_resource_write_leaves_status_untouched(api: httpx.Client) -> None:
    body = canary()
    body["status"] = {"phase": "Succeeded"}
    created = create(api, CANARIES, body)
    assert "status" not in created  # status is reset on create
    api.patch(f"{CANARIES}/c1/status", json={"status": {"phase": "Pending"}}, headers=MERGE)
    patched = api.patch(f"{CANARIES}/c1", json={"spec": {"paused": True}, "status": {"phase": "RolledBack"}},
                        headers=MERGE).json()
    assert patched["status"] == {"phase": "Pending"} and patched["spec"]["paused"] is True


def test_status_write_is_validated_against_the_status_schema(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    response = api.patch(f"{CANARIES}/c1/status", json={"status": {"phase": "Exploded"}}, headers=MERGE)
    assert invalid_causes(response)[0]["field"] == "status.phase"


# ------------------------------------------------------------------------------------ validation


def test_defaults_are_applied(api: httpx.Client) -> None:
    spec = create(api, CANARIES, canary())["spec"]
    assert spec["paused"] is False and spec["replicas"] == 1 and spec["onNoData"] == "Hold"
    assert spec["target"] == {"configMap": {"name": "feature-flags", "key": "flags.flagd.json"}}  # nested too
    assert [s["weight"] for s in spec["stages"]] == [10, 50, 100]


def test_unknown_fields_are_pruned(api: httpx.Client) -> None:
    obj = create(api, CANARIES, canary(bogus=1, target={"configMap": {"name": "x", "nope": True}}))
    assert "bogus" not in obj["spec"] and obj["spec"]["target"]["configMap"] == {"name": "x",
                                                                                "key": "flags.flagd.json"}


def test_preserve_unknown_fields_and_int_or_string(api: httpx.Client) -> None:
    obj = create(api, CANARIES, canary(extra={"any": {"thing": [1]}}, port="http"))
    assert obj["spec"]["extra"] == {"any": {"thing": [1]}} and obj["spec"]["port"] == "http"
    bad = api.post(CANARIES, json=canary("c2", port=1.5))
    assert invalid_causes(bad)[0]["field"] == "spec.port"


def test_strict_field_validation_refuses_unknown_fields(api: httpx.Client) -> None:
    response = api.post(CANARIES, params={"fieldValidation": "Strict"}, json=canary(bogus=1))
    body = assert_status(response, 400, "BadRequest")
    assert 'unknown field "spec.bogus"' in body["message"]
    warned = api.post(CANARIES, params={"fieldValidation": "Warn"}, json=canary(bogus=1))
    assert warned.status_code == 201 and 'unknown field \\"spec.bogus\\"' in warned.headers["Warning"]


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"flag": 5}, "spec.flag", 'Invalid value: "integer": spec.flag in body must be of type string: "integer"'),
        ({"flag": None}, "spec.flag", "Required value"),
        ({"onNoData": "Maybe"}, "spec.onNoData",
         'Unsupported value: "Maybe": supported values: "Hold", "Rollback", "Ignore"'),
        ({"replicas": 11}, "spec.replicas",
         "Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        ({"replicas": -1}, "spec.replicas",
         "Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        ({"stages": [{"weight": 0}, {"weight": 100}]}, "spec.stages[0].weight",
         "Invalid value: 0: spec.stages[0].weight in body should be greater than 0"),
        ({"flag": "-bad"}, "spec.flag",
         "Invalid value: \"-bad\": spec.flag in body should match '^[A-Za-z0-9][A-Za-z0-9._-]*$'"),
        ({"flag": "x" * 64}, "spec.flag", "Too long: may not be more than 63 bytes"),
        ({"target": {"configMap": {"name": ""}}}, "spec.target.configMap.name",
         'Invalid value: "": spec.target.configMap.name in body should be at least 1 chars long'),
        ({"stages": []}, "spec.stages", "Invalid value: 0: spec.stages in body should have at least 1 items"),
        ({"stages": [{"weight": w} for w in range(1, 12)]}, "spec.stages",
         "Too many: 11: must have at most 10 items"),
        ({"labels": {str(i): "v" for i in range(5)}}, "spec.labels", "Too many: 5: must have at most 4 items"),
        ({"stages": [{"weight": 100, "duration": "soon"}]}, "spec.stages[0].duration", "should match"),
        ({"stages": [{"duration": "1h"}, {"weight": 100}]}, "spec.stages[0].weight", "Required value"),
        ({"metrics": [{"name": "a", "max": 1}, {"name": "a", "max": 2}]}, "spec.metrics[1]",
         'Duplicate value: {"name":"a"}'),
    ],
    ids=["type", "required", "enum", "maximum", "minimum", "exclusiveMinimum", "pattern", "maxLength",
         "minLength", "minItems", "maxItems", "maxProperties", "nested-pattern", "nested-required", "list-map-keys"],
)
def test_schema_violation_is_422_with_field_path(api: httpx.Client, spec: Json, field: str, message: str) -> None:
    body = canary()
    body["spec"].update(spec)
    if body["spec"]["flag"] is None:
        del body["spec"]["flag"]
    causes = invalid_causes(api.post(CANARIES, json=body))
    assert any(c["field"] == field and message in c["message"] for c in causes), causes


def test_format_date_time_is_checked(api: httpx.Client) -> None:
    crd = yaml.safe_load(CANARY_CRD.read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    props["notBefore"] = {"type": "string", "format": "date-time"}
    crd["metadata"]["resourceVersion"] = api.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/canaries.sandbox.featurerollout.io"
    ).json()["metadata"]["resourceVersion"]
    assert api.put("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/canaries.sandbox.featurerollout.io",
                   json=crd).status_code == 200
    # kube-apiserver validates with a replaced CRD's schema a moment after the update; the sandbox at once.
    bad = canary("bad", notBefore="tomorrow")
    refused = wait_for(lambda: (r := api.post(CANARIES, json=bad, params={"dryRun": "All"})).status_code == 422 and r,
                       30, what="the new schema in force")
    assert refused.status_code == 422
    assert api.post(CANARIES, json=canary("ok", notBefore="2026-01-02T03:04:05Z")).status_code == 201
    causes = invalid_causes(api.post(CANARIES, json=bad))
    assert causes[0]["field"] == "spec.notBefore" and "must be of type date-time" in causes[0]["message"]


def test_cel_rule_violation_answers_kube_style_message(api: httpx.Client) -> None:
    response = api.post(CANARIES, json=canary("bad", stages=[{"weight": 10}, {"weight": 50}, {"weight": 40},
                                                               {"weight": 100}]))
    body = assert_status(response, 422, "Invalid")
    # kube-apiserver 1.37 names no value for an object or a list (older servers said `"array": `).
    assert body["message"] == ('Canary.sandbox.featurerollout.io "bad" is invalid: spec.stages: Invalid value: '
                               'stage weights must be strictly increasing')
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.stages",
                                          "message": "Invalid value: stage weights must be strictly increasing"}]


def test_cel_message_expression(api: httpx.Client) -> None:
    causes = invalid_causes(api.post(CANARIES, json=canary(stages=[{"weight": 10}, {"weight": 50}])))
    assert causes[0]["message"] == 'Invalid value: the last stage must have weight 100, not less'


def test_cel_rule_field_path_and_nested_list_items(api: httpx.Client) -> None:
    both = canary(target={"configMap": {"name": "x"}, "webhook": {"url": "http://x"}})
    assert invalid_causes(api.post(CANARIES, json=both))[0]["field"] == "spec.target"
    metric = canary(metrics=[{"name": "ok", "max": 1}, {"name": "nothing"}])
    causes = invalid_causes(api.post(CANARIES, json=metric))
    assert causes == [{"reason": "FieldValueInvalid", "field": "spec.metrics[1]",
                       "message": 'Invalid value: set at least one of min and max'}]


def test_cel_numbers_reach_cel_typed_by_the_schema(api: httpx.Client) -> None:
    # weight is `type: number`: the JSON integer 100 reaches CEL as the double 100.0, so the rule
    # `weight == 100.0` holds; ordering between int and double literals works (cross-type comparisons)
    assert api.post(CANARIES, json=canary(stages=[{"weight": 0.5}, {"weight": 100}])).status_code == 201


def test_cel_standard_macros_and_size_forms() -> None:
    from featurerollout_sandbox import cel

    node = {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "integer"}}}}
    value = [{"w": 1}, {"w": 2}, {"w": 3}]
    rules = [
        "self.all(s, s.w > 0)", "self.exists(s, s.w == 2)", "self.exists_one(s, s.w == 3)",
        "self.map(s, s.w).size() == 3", "self.filter(s, s.w > 1).size() == 2", "size(self) == self.size()",
        "has(self[0].w)", "self[size(self) - 1].w == 3", "size(self) > 1 ? self[0].w < self[1].w : true",
        "self.map(s, s.w).isSorted()", "self.map(s, s.w).sum() == 6", "self.map(s, s.w).max() == 3",
        "'a,b'.split(',').size() == 2", "'Hello'.lowerAscii() == 'hello'", "self.map(s, s.w).indexOf(2) == 1",
        "(size(self) <= 3 || self[3].w > 0)",
    ]
    for rule in rules:
        assert cel.check_rules(value, {**node, "x-kubernetes-validations": [{"rule": rule}]}, cel.MISSING, "s") == [
        ], rule


def test_cel_equality_between_int_and_double_is_an_error_as_kube_apiserver_refuses_it() -> None:
    from featurerollout_sandbox import cel

    node = {"type": "number", "x-kubernetes-validations": [{"rule": "self == 100"}]}
    causes = cel.check_rules(100, node, cel.MISSING, "spec.w")
    assert causes and "evaluation error" in causes[0]["message"]


def test_cel_transition_rule_with_old_self(api: httpx.Client) -> None:
    create(api, CANARIES, canary(generationLock="a"))
    refused = api.patch(f"{CANARIES}/c1", json={"spec": {"generationLock": "b"}}, headers=MERGE)
    assert invalid_causes(refused)[0]["message"] == 'Invalid value: "b": generationLock is immutable'
    assert api.patch(f"{CANARIES}/c1", json={"spec": {"paused": True}}, headers=MERGE).status_code == 200


def test_featurerollout_example_is_accepted_and_defaulted(api: httpx.Client) -> None:
    ensure_namespace(api, "shop")
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "FeatureRollout":
                ns = doc["metadata"].get("namespace", "default")
                created = create(api, f"/apis/featurerollout.io/v1alpha1/namespaces/{ns}/featurerollouts", doc)
                assert created["spec"]["stages"][-1]["weight"] == 100


def test_featurerollout_with_decreasing_weights_is_refused_with_the_cel_message(api: httpx.Client) -> None:
    body = {"apiVersion": "featurerollout.io/v1alpha1", "kind": "FeatureRollout", "metadata": {"name": "bad"},
            "spec": {"flag": "x", "target": {"configMap": {"name": "feature-flags"}},
                     "stages": [{"weight": 10}, {"weight": 50}, {"weight": 40}, {"weight": 100}]}}
    body_json = assert_status(api.post(ROLLOUTS, json=body), 422, "Invalid")
    assert body_json["message"] == ('FeatureRollout.featurerollout.io "bad" is invalid: spec.stages: Invalid value: '
                                    'stage weights must be strictly increasing')


def _rollout(**spec: Any) -> Json:
    body: Json = {"flag": "x", "target": {"configMap": {"name": "feature-flags"}}, **spec}
    return {"apiVersion": "featurerollout.io/v1alpha1", "kind": "FeatureRollout", "metadata": {"name": "r"},
            "spec": body}


_METRIC = {"name": "error-rate", "query": "vector(0)", "max": 0.01}


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"stages": [{"weight": 10}, {"weight": 50}]}, "spec.stages", "100"),
        ({"stages": [{"weight": 0}, {"weight": 100}]}, "spec.stages[0].weight", "greater than 0"),
        ({"stages": [{"weight": 100.5}]}, "spec.stages[0].weight", "less than or equal to 100"),
        ({"stages": [{"weight": 10, "duration": "an hour"}, {"weight": 100}]}, "spec.stages[0].duration",
         "should match"),
        ({"target": {"configMap": {"name": "a"}, "featureFlag": {"name": "b"}}}, "spec.target", "exactly one"),
        ({"analysis": {"interval": "1m", "prometheus": {"address": "http://p:9090"},
                       "metrics": [_METRIC, _METRIC]}}, "spec.analysis.metrics", "unique"),
        ({"analysis": {"interval": "1m", "prometheus": {"address": "http://p:9090"},
                       "metrics": [{"name": "m", "query": "vector(0)"}]}}, "spec.analysis.metrics[0]", "min"),
    ],
    ids=["last-weight-100", "weight-positive", "weight-at-most-100", "duration", "one-target", "unique-metrics",
         "min-or-max"],
)
def test_featurerollout_crd_rules_are_enforced(api: httpx.Client, spec: Json, field: str, words: str) -> None:
    causes = invalid_causes(api.post(ROLLOUTS, json=_rollout(**spec)))
    assert any(c["field"] == field and words in c["message"] for c in causes), causes
    assert not any("evaluation error" in c["message"] for c in causes), causes


# ----------------------------------------------------------------------------------------- watch


def test_watch_from_resource_version_streams_later_events(api: httpx.Client) -> None:
    first = create(api, CONFIGMAPS, configmap("a"))
    create(api, CONFIGMAPS, configmap("b"))
    api.patch(f"{CONFIGMAPS}/b", json={"data": {"x": "1"}}, headers=MERGE)
    api.delete(f"{CONFIGMAPS}/a")
    events = watch_events(api, CONFIGMAPS, 3, resourceVersion=first["metadata"]["resourceVersion"])
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    assert [rv(e["object"]) for e in events] == sorted(rv(e["object"]) for e in events)


def test_watch_without_resource_version_starts_with_added_events(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap("a"))
    create(api, CONFIGMAPS, configmap("b"))
    for params in ({}, {"resourceVersion": "0"}):
        events = watch_events(api, CONFIGMAPS, 2, **params)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_streams_live_events(api: httpx.Client, sandbox: Sandbox) -> None:
    start = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    events: list[Json] = []
    with api.stream("GET", CONFIGMAPS, params={"watch": "1", "resourceVersion": start, "timeoutSeconds": "5"}) as r:
        with httpx.Client(base_url=sandbox.url) as other:
            create(other, CONFIGMAPS, configmap("live"))
        for line in r.iter_lines():
            events.append(json.loads(line))
            break
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "live"


def test_watch_too_old_resource_version_is_410_gone(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.set_history_limit(2)
    first = create(api, CONFIGMAPS, configmap("a"))
    for value in ("1", "2", "3"):
        api.patch(f"{CONFIGMAPS}/a", json={"data": {"k": value}}, headers=MERGE)
    events = watch_events(api, CONFIGMAPS, 1, resourceVersion=first["metadata"]["resourceVersion"])
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    recent = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    assert watch_events(api, CONFIGMAPS, 0, resourceVersion=recent, timeoutSeconds="1") == []


def test_watch_honours_timeout_seconds(api: httpx.Client) -> None:
    start = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    create(api, CONFIGMAPS, configmap("a"))
    started = time.monotonic()
    with api.stream("GET", CONFIGMAPS, params={"watch": "true", "resourceVersion": start,
                                               "timeoutSeconds": "1"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert 0.9 <= time.monotonic() - started < 4  # the server ended the stream, not the client
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "a")]


@pytest.mark.sandbox_only("kube-apiserver sends BOOKMARKs about once a minute; the sandbox every --bookmark-interval")
def test_watch_sends_bookmarks_when_allowed(api: httpx.Client) -> None:
    start = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    events = watch_events(api, CONFIGMAPS, 1, resourceVersion=start, allowWatchBookmarks="true")
    assert events[0]["type"] == "BOOKMARK" and events[0]["object"]["kind"] == "ConfigMap"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(start)


def test_watch_filters_by_label_and_field_selector(api: httpx.Client) -> None:
    start = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    create(api, CONFIGMAPS, configmap("a", {"app": "x"}))
    create(api, CONFIGMAPS, configmap("b", {"app": "x"}))
    create(api, CONFIGMAPS, configmap("c", {"app": "y"}))
    by_label = watch_events(api, CONFIGMAPS, 2, resourceVersion=start, labelSelector="app=x")
    assert [e["object"]["metadata"]["name"] for e in by_label] == ["a", "b"]
    by_field = watch_events(api, CONFIGMAPS, 1, resourceVersion=start, fieldSelector="metadata.name=c")
    assert [e["object"]["metadata"]["name"] for e in by_field] == ["c"]


def test_watch_with_a_selector_sees_objects_enter_and_leave_it(api: httpx.Client) -> None:
    start = api.get(CONFIGMAPS).json()["metadata"]["resourceVersion"]
    create(api, CONFIGMAPS, configmap("a"))
    api.patch(f"{CONFIGMAPS}/a", json={"metadata": {"labels": {"app": "x"}}}, headers=MERGE)
    api.patch(f"{CONFIGMAPS}/a", json={"data": {"n": "1"}}, headers=MERGE)
    api.patch(f"{CONFIGMAPS}/a", json={"metadata": {"labels": {"app": "y"}}}, headers=MERGE)
    events = watch_events(api, CONFIGMAPS, 3, resourceVersion=start, labelSelector="app=x")
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]  # as kube-apiserver's watch cache
    # kube-apiserver's watch cache sends the last state that matched (labels still app=x)
    assert events[2]["object"]["metadata"]["labels"] == {"app": "x"}


def test_watch_send_initial_events_ends_with_an_annotated_bookmark(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap("a"))
    events = watch_events(api, CONFIGMAPS, 2, sendInitialEvents="true", allowWatchBookmarks="true",
                          resourceVersionMatch="NotOlderThan")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    refused = api.get(CONFIGMAPS, params={"watch": "1", "sendInitialEvents": "true"})
    assert_status(refused, 422, "Invalid")


def test_watch_is_recorded_when_its_stream_starts(api: httpx.Client, sandbox: Sandbox) -> None:
    with api.stream("GET", CONFIGMAPS, params={"watch": "1", "timeoutSeconds": "5"}) as response:
        assert response.status_code == 200
        wait_for(lambda: sandbox.requests.count(verb="watch", resource="configmaps", status=200) == 1, 5,
                 what="the watch in the request log")
    assert sandbox.requests.count(verb="watch") == 1


# ---------------------------------------------------------------------------------------- tables


TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


def test_table_for_custom_resources_uses_printer_columns(api: httpx.Client) -> None:
    create(api, CANARIES, canary())
    api.patch(f"{CANARIES}/c1/status", json={"status": {"phase": "Progressing", "currentWeight": 25}},
              headers=MERGE)
    table = api.get(CANARIES, headers=TABLE).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Flag", "Phase", "Weight", "First", "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[:5] == ["c1", "new-checkout", "Progressing", 25, 10] and cells[5].endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert api.get(f"{CANARIES}/c1", headers=TABLE).json()["rows"][0]["cells"][0] == "c1"


def test_table_for_configmaps_has_name_data_age(api: httpx.Client) -> None:
    create(api, CONFIGMAPS, configmap())
    table = api.get(CONFIGMAPS, headers=TABLE).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["cm1", 1]


def test_human_duration_matches_kubernetes() -> None:
    from featurerollout_sandbox.tables import human_duration

    cases = {0: "0s", 119: "119s", 120: "2m", 125: "2m5s", 600: "10m", 3 * 3600: "3h", 3 * 3600 + 60: "3h1m",
             9 * 3600: "9h", 50 * 3600: "2d2h", 10 * 86400: "10d", 800 * 86400: "2y70d"}
    assert {k: human_duration(k) for k in cases} == cases


# ---------------------------------------------------------------------------------------- events


@pytest.mark.sandbox_only("kube-apiserver serves both Event APIs from one store, converting between them; "
                          "the sandbox keeps two (docs/sandbox.md)")
def test_events_of_both_api_groups_are_stored_separately(api: httpx.Client) -> None:
    core = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"}, "reason": "Started",
            "message": "m", "type": "Normal",
            "involvedObject": {"kind": "Canary", "name": "c1", "namespace": "default", "uid": "u1"}}
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"}, "reason": "Started",
           "note": "n", "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z", "action": "a",
           "reportingController": "x", "reportingInstance": "y", "regarding": {"kind": "Canary", "name": "c1"}}
    create(api, "/api/v1/namespaces/default/events", core)
    create(api, "/apis/events.k8s.io/v1/namespaces/default/events", new)
    assert [e["metadata"]["name"] for e in api.get("/api/v1/events").json()["items"]] == ["e1"]
    assert [e["metadata"]["name"] for e in api.get("/apis/events.k8s.io/v1/events").json()["items"]] == ["e2"]
    selected = api.get("/api/v1/namespaces/default/events",
                       params={"fieldSelector": "involvedObject.kind=Canary,involvedObject.name=c1"}).json()
    assert [e["metadata"]["name"] for e in selected["items"]] == ["e1"]
    none = api.get("/api/v1/namespaces/default/events", params={"fieldSelector": "involvedObject.name=c2"})
    assert none.json()["items"] == []


def test_leases_are_served(api: httpx.Client) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}
    created = create(api, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", lease)
    assert created["spec"]["holderIdentity"] == "me"




SECRETS = "/api/v1/namespaces/default/secrets"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stored_secret(api: httpx.Client, name: str = "s1") -> Json:
    """The Secret as a reader sees it: what the server stored."""
    response = api.get(f"{SECRETS}/{name}")
    assert response.status_code == 200, response.text
    secret: Json = response.json()
    return secret


def test_secret_string_data_is_stored_as_data_on_create(api: httpx.Client) -> None:
    # kube-apiserver converts stringData into data (base64) and never stores stringData;
    # where a key is in both, stringData wins
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
            "data": {"kept": b64("from data"), "both": b64("old")}, "stringData": {"both": "new", "token": "t0ken"}}
    created = create(api, SECRETS, body)
    assert "stringData" not in created
    assert created["data"] == {"kept": b64("from data"), "both": b64("new"), "token": b64("t0ken")}
    stored = stored_secret(api)
    assert "stringData" not in stored and stored["data"] == created["data"]


def test_secret_string_data_alone_becomes_data(api: httpx.Client) -> None:
    body = {"metadata": {"name": "s1"}, "stringData": {"token": "snow ☃"}}
    create(api, SECRETS, body)
    stored = stored_secret(api)
    assert "stringData" not in stored
    assert stored["data"] == {"token": b64("snow ☃")}  # base64 of the UTF-8


def test_secret_string_data_on_update_replaces_data_like_any_put(api: httpx.Client) -> None:
    create(api, SECRETS, {"metadata": {"name": "s1"}, "data": {"old": b64("o"), "both": b64("o")}})
    current = stored_secret(api)
    body = {"metadata": {"name": "s1", "resourceVersion": current["metadata"]["resourceVersion"]},
            "data": {"both": b64("data")}, "stringData": {"both": "string", "new": "n"}}
    response = api.put(f"{SECRETS}/s1", json=body)
    assert response.status_code == 200, response.text
    stored = stored_secret(api)
    assert "stringData" not in stored
    assert stored["data"] == {"both": b64("string"), "new": b64("n")}


@pytest.mark.parametrize("headers", [MERGE, STRATEGIC], ids=["merge", "strategic"])
def test_secret_string_data_in_a_patch_is_merged_over_the_stored_data(
    api: httpx.Client, headers: dict[str, str]
) -> None:
    create(api, SECRETS, {"metadata": {"name": "s1"}, "data": {"kept": b64("k"), "both": b64("old")}})
    response = api.patch(f"{SECRETS}/s1", json={"stringData": {"both": "new", "added": "a"}}, headers=headers)
    assert response.status_code == 200, response.text
    assert "stringData" not in response.json()
    stored = stored_secret(api)
    assert "stringData" not in stored
    assert stored["data"] == {"kept": b64("k"), "both": b64("new"), "added": b64("a")}


def test_secret_string_data_by_server_side_apply_is_stored_as_data(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/apply-patch+yaml"}
    params = {"fieldManager": "t"}
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "stringData": {"token": "one"}}
    created = api.patch(f"{SECRETS}/s1", params=params, content=yaml.safe_dump(manifest), headers=headers)
    assert created.status_code in (200, 201), created.text
    assert stored_secret(api)["data"] == {"token": b64("one")}
    manifest["stringData"] = {"token": "two"}
    updated = api.patch(f"{SECRETS}/s1", params=params, content=yaml.safe_dump(manifest), headers=headers)
    assert updated.status_code == 200, updated.text
    stored = stored_secret(api)
    assert "stringData" not in stored and stored["data"] == {"token": b64("two")}
# ------------------------------------------------------------------------------ faults and the log


def test_fault_error_on_every_third_matching_request(api: httpx.Client, sandbox: Sandbox) -> None:
    create(api, CONFIGMAPS, configmap())
    sandbox.faults.add(verbs=["update", "patch"], resource="configmaps", every=3, status=409)
    codes = [api.patch(f"{CONFIGMAPS}/cm1", json={"data": {"n": str(i)}}, headers=MERGE).status_code
             for i in range(6)]
    assert codes == [200, 200, 409, 200, 200, 409]
    assert api.get(f"{CONFIGMAPS}/cm1").status_code == 200  # other verbs are not matched


@pytest.mark.parametrize(("status", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable"),
                                                (429, "TooManyRequests"), (409, "Conflict")])
def test_fault_error_statuses_are_proper_status_bodies(
    api: httpx.Client, sandbox: Sandbox, status: int, reason: str
) -> None:
    sandbox.faults.add(verbs=["list"], resource="configmaps", status=status, times=1)
    assert_status(api.get(CONFIGMAPS), status, reason)
    assert api.get(CONFIGMAPS).status_code == 200  # times=1: fired once
    if status == 429:
        sandbox.faults.add(verbs=["list"], status=429, times=1)
        assert api.get(CONFIGMAPS).headers["Retry-After"] == "1"


def test_fault_probability_with_a_seed_is_deterministic(api: httpx.Client, sandbox: Sandbox) -> None:
    def run() -> list[int]:
        sandbox.faults.clear()
        sandbox.faults.add(verbs=["get"], resource="namespaces", probability=0.5, seed=7, status=503)
        return [api.get("/api/v1/namespaces/default").status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and 503 in first and 200 in first


def test_fault_latency(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.add(action="latency", verbs=["list"], resource="secrets", latency=0.3)
    started = time.monotonic()
    assert api.get("/api/v1/namespaces/default/secrets").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_cut_watch_mid_stream(api: httpx.Client, sandbox: Sandbox) -> None:
    for name in "abc":
        create(api, CONFIGMAPS, configmap(name))
    sandbox.faults.add(action="cut_watch", resource="configmaps", after_events=2, times=1)
    lines: list[str] = []
    with pytest.raises(httpx.HTTPError), api.stream("GET", CONFIGMAPS, params={"watch": "1",
                                                                               "timeoutSeconds": "5"}) as response:
        for line in response.iter_lines():
            lines.append(line)
    assert len([x for x in lines if x]) == 2


def test_request_log_records_verb_path_user_agent_and_status(api: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.requests.clear()
    api.get(f"{CONFIGMAPS}/missing", headers={"User-Agent": "probe/1.0"})
    create(api, CONFIGMAPS, configmap())
    records = sandbox.requests.records()
    assert [(r["verb"], r["resource"], r["status"]) for r in records] == [("get", "configmaps", 404),
                                                                          ("create", "configmaps", 201)]
    assert records[0]["user_agent"] == "probe/1.0" and records[0]["path"] == f"{CONFIGMAPS}/missing"
    assert sandbox.requests.count(verb="create", resource="configmaps") == 1


def test_control_api_over_http(api: httpx.Client, sandbox: Sandbox) -> None:
    control = SandboxControl(sandbox.url)
    assert control.healthy()
    fault = control.add_fault(verbs=["create"], resource="configmaps", status=500, times=1)
    assert_status(api.post(CONFIGMAPS, json=configmap()), 500, "InternalError")
    assert control.faults()[0]["fired"] == 1
    control.remove_fault(fault["id"])
    assert control.faults() == []
    create(api, CONFIGMAPS, configmap())
    assert control.count(verb="create", resource="configmaps") == 2
    assert control.count(verb="create", resource="configmaps", status=201) == 1
    assert control.configure(watch_history_limit=5)["watchHistoryLimit"] == 5
    control.clear_requests()
    assert control.requests() == []
    with pytest.raises(RuntimeError):
        control.add_fault(action="explode")


@pytest.fixture
def many_configmaps(api: httpx.Client) -> Iterator[None]:
    for i in range(50):
        create(api, CONFIGMAPS, configmap(f"cm{i:02d}"))
    yield


def test_wait_for_helper_polls_with_a_deadline(api: httpx.Client, many_configmaps: None) -> None:
    assert wait_for(lambda: len(api.get(CONFIGMAPS).json()["items"]) == 50, timeout=2)
