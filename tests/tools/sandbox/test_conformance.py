"""One named test per semantic of the sandbox, against the in-process server over plain HTTP:
discovery, OpenAPI, objects and the status subresource.

Where kube-apiserver's behaviour is the reference, the test says so; docs/sandbox.md lists
where the sandbox simplifies.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from featurerollout_sandbox.server import Sandbox

from .conformance_support import (
    CANARIES,
    CONFIGMAPS,
    JSON_PATCH,
    MERGE,
    ROLLOUTS,
    STRATEGIC,
    assert_status,
    canary,
    configmap,
    create,
    ensure_namespace,
    invalid_causes,
    rv,
)
from .fixtures import CANARY_CRD, REPO, wait_for

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


