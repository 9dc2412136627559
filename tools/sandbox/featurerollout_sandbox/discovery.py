"""Discovery documents: /version, /api, /api/v1, /apis, /apis/<group>[/<version>].

Only the legacy (unaggregated) JSON form is served; kubectl asks for aggregated discovery
first and falls back to this when the response is plain application/json.
"""

from __future__ import annotations

from typing import Any

from featurerollout_sandbox.resources import ResourceType

Json = dict[str, Any]

KUBERNETES_VERSION = {"major": "1", "minor": "37"}  # the real kube-apiserver the tests build
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def version_info() -> Json:
    """The body of /version."""
    return {
        **KUBERNETES_VERSION,
        "gitVersion": "v1.37.0-featurerollout-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.26",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> Json:
    """The body of /api."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _versions(resources: list[ResourceType]) -> list[str]:
    seen: list[str] = []
    for rt in resources:
        for v in rt.versions:
            if v.name not in seen:
                seen.append(v.name)
    return seen


def _preferred(resources: list[ResourceType], versions: list[str]) -> str:
    storage = [rt.storage_version for rt in resources]
    return storage[0] if storage else versions[0]


def api_group(group: str, resources: list[ResourceType]) -> Json:
    """The APIGroup of /apis/<group>."""
    versions = _versions(resources)
    preferred = _preferred(resources, versions)
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
    }


def api_group_list(groups: dict[str, list[ResourceType]]) -> Json:
    """The body of /apis (every group but the core one)."""
    items = [api_group(g, rts) for g, rts in sorted(groups.items()) if g]
    for item in items:
        item.pop("kind")
        item.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def resource_list(group: str, version: str, resources: list[ResourceType]) -> Json:
    """The APIResourceList of /api/v1 or /apis/<group>/<version>."""
    entries: list[Json] = []
    for rt in sorted(resources, key=lambda r: r.plural):
        v = rt.version(version)
        if v is None:
            continue
        entry: Json = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = rt.short_names
        if rt.categories:
            entry["categories"] = rt.categories
        entries.append(entry)
        if v.status_subresource:
            entries.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }
