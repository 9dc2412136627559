"""The sandbox's conformance: validation (schema, defaults, CEL), watches and table output.

Where kube-apiserver's behaviour is the reference, the test says so; docs/sandbox.md lists
where the sandbox simplifies.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import yaml

from featurerollout_sandbox.server import Sandbox

from .conformance_support import (
    CANARIES,
    CONFIGMAPS,
    MERGE,
    ROLLOUTS,
    Json,
    assert_status,
    canary,
    configmap,
    create,
    ensure_namespace,
    invalid_causes,
    rv,
    watch_events,
)
from .fixtures import CANARY_CRD, REPO, wait_for

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


