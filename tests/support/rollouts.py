"""Reading and writing rollouts, their flag document and their Events on a test cluster: the
vocabulary the process tests share (and tests/support/scenario.py builds its given/when/then on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, rollout_manifest, wait_until
from tests.support.watching import values_seen

GROUP, VERSION, PLURAL = "featurerollout.io", "v1alpha1", "featurerollouts"
KEY = "flags.flagd.json"
OTHER_FLAG = '"dark-mode": {"state": "ENABLED", "variants": {"a": 1.0e0}, "defaultVariant": "a"}'
SHARED_DOC = '{\n  "flags": {\n    ' + OTHER_FLAG + "\n  }\n}\n"
TWO_SECOND_STAGES = [
    {"weight": 10, "duration": "2s"},
    {"weight": 25, "duration": "2s"},
    {"weight": 50, "duration": "2s"},
    {"weight": 100, "duration": "2s"},
]


def make_configmap(cluster: Cluster, name: str = "feature-flags", doc: str = SHARED_DOC, **extra: str) -> None:
    cluster.core.create_namespaced_config_map(
        "default", {"metadata": {"name": name}, "data": {KEY: doc, **extra}}
    )


def make_rollout(cluster: Cluster, name: str, **spec: Any) -> None:
    spec.setdefault("flag", name)
    spec.setdefault("target", {"configMap": {"name": "feature-flags"}})
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, rollout_manifest(name, **spec)
    )


def rollout(cluster: Cluster, name: str) -> dict[str, Any]:
    body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return body


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    return rollout(cluster, name).get("status") or {}


def document(cluster: Cluster, name: str = "feature-flags") -> str:
    return str(cluster.core.read_namespaced_config_map(name, "default").data[KEY])


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(lambda: (s := status(cluster, name)).get("phase") == phase and s, timeout,
                      f"{name} to reach {phase}")


def wait_rolled_back(cluster: Cluster, name: str, timeout: float = 30) -> dict[str, Any]:
    """The status once the rollback is done: RolledBack at 0%. A RolledBack status that still has
    a weight is a rollback whose 0% is being written (engine.rollback_intent) or retried."""
    return wait_until(
        lambda: (s := status(cluster, name)).get("phase") == "RolledBack" and s.get("currentWeight") == 0 and s,
        timeout, f"{name} to be rolled back to 0%",
    )


def wait_degraded(cluster: Cluster, name: str, timeout: float = 20) -> dict[str, Any]:
    """The Degraded condition, once it is True."""
    return wait_until(
        lambda: next((c for c in status(cluster, name).get("conditions", [])
                      if c["type"] == "Degraded" and c["status"] == "True"), None),
        timeout, f"a Degraded condition on {name}",
    )


@contextmanager
def weights_seen(cluster: Cluster, flag: str, configmap: str = "feature-flags") -> Iterator[list[float | None]]:
    """Every weight the ConfigMap gives `flag`, in the order the API server stored them."""
    start = cluster.core.read_namespaced_config_map(configmap, "default").metadata.resource_version
    with values_seen(cluster.core.list_namespaced_config_map, "default", name=configmap, start=start, timeout=120,
                     value=lambda obj: read_flag_weight((obj.data or {}).get(KEY), flag)) as seen:
        yield seen


def configmap_writes(cluster: Cluster, name: str = "feature-flags") -> list[dict[str, Any]]:
    return [r for r in cluster.log.requests(resource="configmaps", name=name)
            if r["verb"] in ("update", "patch") and r["status"] < 300]



def events_of(cluster: Cluster, name: str) -> list[Any]:
    items = cluster.core.list_namespaced_event("default").items
    mine = [e for e in items if e.involved_object.name == name]
    return sorted(mine, key=lambda e: int(e.metadata.resource_version))  # the order they were stored in


