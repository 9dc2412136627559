"""The real kube-apiserver in the test suite: which servers to run on, and a clean slate per test.

`FEATUREROLLOUT_TEST_APISERVER=sandbox|real|both` picks the servers that the process-level tests
(`cluster` fixture) and the conformance suite run on. Unset, it is `real` where the control plane
can be built (Go on PATH) and `sandbox` elsewhere, with one line saying so. Under CI=true a
missing Go is an error, never a skip.

One real control plane serves a whole pytest session (its start costs seconds, the sandbox's
milliseconds). Between tests, `reset()` deletes every namespaced object the tests could have made
in every namespace but the system ones, through the API itself (deletecollection), so each test
starts as on a fresh server. Namespaces themselves are kept: with no kube-controller-manager a
deleted namespace would stay Terminating for ever.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.missing import skip_or_fail, under_ci
from tools import real_apiserver

SERVERS = ("sandbox", "real")
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
ENV = "FEATUREROLLOUT_TEST_APISERVER"


def go_available() -> bool:
    return shutil.which("go") is not None or real_apiserver.BINARY.exists()


def selected_servers() -> tuple[str, ...]:
    """The servers named by FEATUREROLLOUT_TEST_APISERVER (see the module docstring)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value == "both":
        return SERVERS
    if value in SERVERS:
        return (value,)
    if value:
        raise pytest.UsageError(f"{ENV}={value!r}: expected sandbox, real or both")
    return ("real",) if go_available() or under_ci() else ("sandbox",)


def conformance_servers() -> tuple[str, ...]:
    """The sandbox's conformance suite runs on both servers wherever the real one can be built:
    every difference it finds is a sandbox bug, or a documented simplification."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in SERVERS:
        return (value,)
    return SERVERS if go_available() or under_ci() else ("sandbox",)


@contextmanager
def real_http_client(kubeconfig: Path) -> Iterator[httpx.Client]:
    """A plain httpx client on the server of a real-apiserver kubeconfig, as its user."""
    cluster = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]
    token = json.loads(kubeconfig.read_text())["users"][0]["user"]["token"]
    context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with httpx.Client(base_url=cluster["server"], verify=context, timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def require_real() -> None:
    """Skip (fail under CI) when the real control plane cannot be built here."""
    if go_available():
        return
    skip_or_fail("the real kube-apiserver tier needs Go 1.26+ on PATH to build it (make apiserver)")


@contextmanager
def session_control_plane(crds: list[Path]) -> Iterator[tuple[real_apiserver.ControlPlane, Path]]:
    """One real control plane with crds/ plus `crds` applied."""
    with real_apiserver.running(crds=crds) as running:
        yield running


def namespaced_collections(api: httpx.Client) -> list[str]:
    """Path templates of every namespaced resource that can be deleted as a collection, from
    discovery: built-in and custom alike."""
    found: list[str] = []
    versions = ["/api/v1"] + [
        f"/apis/{group['preferredVersion']['groupVersion']}" for group in api.get("/apis").json()["groups"]
    ]
    for prefix in versions:
        for resource in api.get(prefix).json()["resources"]:
            if resource["namespaced"] and "/" not in resource["name"] and "deletecollection" in resource["verbs"]:
                found.append(f"{prefix}/namespaces/{{namespace}}/{resource['name']}")
    return found


def reset(kubeconfig: Path) -> None:
    """Delete every object in every non-system namespace, so the next test starts clean."""
    with real_http_client(kubeconfig) as api:
        namespaces = [ns["metadata"]["name"] for ns in api.get("/api/v1/namespaces").json()["items"]
                      if ns["metadata"]["name"] not in SYSTEM_NAMESPACES]
        for template in namespaced_collections(api):
            for namespace in namespaces:
                path = template.format(namespace=namespace)
                # Objects a test left with finalizers would otherwise linger as Terminating.
                for item in api.get(path).json().get("items", []):
                    if item["metadata"].get("finalizers"):
                        api.patch(f"{path}/{item['metadata']['name']}", json={"metadata": {"finalizers": None}},
                                  headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
                api.delete(path).raise_for_status()


CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class CrdBaseline:
    """The CRDs a session starts with, put back when a test changed or deleted one of them
    (CRDs are cluster-scoped: `reset()` does not touch them)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        with real_http_client(kubeconfig) as api:
            items = api.get(CRDS_PATH).json()["items"]
        self.versions = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in items}
        self.bodies = {c["metadata"]["name"]: _creatable(c) for c in items}

    def restore(self) -> None:
        with real_http_client(self.kubeconfig) as api:
            current = {c["metadata"]["name"]: c for c in api.get(CRDS_PATH).json()["items"]}
            for name, version in self.versions.items():
                crd = current.get(name)
                if crd is not None and crd["metadata"]["resourceVersion"] == version:
                    continue
                if crd is not None and not crd["metadata"].get("deletionTimestamp"):
                    self._replace(api, name, crd)
                else:
                    _wait(lambda name=name: api.get(f"{CRDS_PATH}/{name}").status_code == 404, f"{name} to go")
                    api.post(CRDS_PATH, json=self.bodies[name]).raise_for_status()
                _wait(lambda name=name: _established(api.get(f"{CRDS_PATH}/{name}").json()), f"{name} established")
                self.versions[name] = api.get(f"{CRDS_PATH}/{name}").json()["metadata"]["resourceVersion"]


    def _replace(self, api: httpx.Client, name: str, crd: dict[str, Any]) -> None:
        """PUT the baseline back; the server's own controllers update the CRD's status meanwhile,
        so a 409 means: read it again and retry."""
        for _ in range(20):
            body = {**self.bodies[name], "metadata": {**self.bodies[name]["metadata"],
                                                      "resourceVersion": crd["metadata"]["resourceVersion"]}}
            response = api.put(f"{CRDS_PATH}/{name}", json=body)
            if response.status_code != 409:
                response.raise_for_status()
                return
            crd = api.get(f"{CRDS_PATH}/{name}").json()
        raise AssertionError(f"could not put CRD {name} back: 20 conflicts in a row")


def _creatable(crd: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in crd["metadata"].items() if k in ("name", "labels", "annotations")}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": meta,
            "spec": crd["spec"]}


def _established(crd: dict[str, Any]) -> bool:
    return any(c["type"] == "Established" and c["status"] == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class AuditLog:
    """The real server's request log, read from its audit log (tools/real_apiserver.py's policy)
    into the records the sandbox's `/sandbox/requests` gives: verb, group, resource, subresource,
    name, namespace, status, user, user_agent, path and time (epoch seconds, when received)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def clear_requests(self) -> None:
        """Forget what was recorded until now."""
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def requests(self, **match: Any) -> list[dict[str, Any]]:
        """The records since the last clear whose fields equal the given ones."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            lines = stream.read().decode(errors="replace").splitlines()
        seen: set[str] = set()
        records = []
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now
                continue
            if event["auditID"] in seen:  # a watch logs ResponseStarted, then ResponseComplete
                continue
            seen.add(event["auditID"])
            record = _record(event)
            if all(record.get(key) == value for key, value in match.items()):
                records.append(record)
        return records

    def count(self, **match: Any) -> int:
        return len(self.requests(**match))


def _record(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef") or {}
    received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
    return {
        "verb": event["verb"],
        "group": ref.get("apiGroup", ""),
        "resource": ref.get("resource", ""),
        "subresource": ref.get("subresource", ""),
        "name": ref.get("name", ""),
        "namespace": ref.get("namespace", ""),
        "status": event.get("responseStatus", {}).get("code", 0),
        "user": event["user"]["username"],
        "user_agent": event.get("userAgent", ""),
        "path": event["requestURI"].split("?")[0],
        "time": received.timestamp(),
    }
