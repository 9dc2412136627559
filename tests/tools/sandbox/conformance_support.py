"""What the sandbox's conformance tests share: paths, object builders, and how to read a
Status or a watch. Where kube-apiserver's behaviour is the reference, the test says so;
docs/sandbox.md lists where the sandbox simplifies."""

from __future__ import annotations

import json
from typing import Any

import httpx

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


