"""The sandbox's conformance: Events, and its own fault injection and request log.

Where kube-apiserver's behaviour is the reference, the test says so; docs/sandbox.md lists
where the sandbox simplifies.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from featurerollout_sandbox.client import SandboxControl
from featurerollout_sandbox.server import Sandbox

from .conformance_support import (
    CONFIGMAPS,
    MERGE,
    STRATEGIC,
    Json,
    assert_status,
    configmap,
    create,
)
from .fixtures import wait_for

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
