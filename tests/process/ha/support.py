"""Leader-elected operator processes for the HA tests: `featurerollout run` without --standalone."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.cluster import Cluster, Process, featurerollout_command, rollout_manifest, wait_until

GROUP, VERSION, PLURAL = "featurerollout.io", "v1alpha1", "featurerollouts"
KEY = "flags.flagd.json"
# Short timings (lease / renew deadline / retry period) for tests that kill many leaders.
SHORT = ("4", "3", "1")
DEFAULT = ("15", "10", "2")


def timing_flags(timings: Sequence[str]) -> list[str]:
    lease, renew, retry = timings
    return ["--lease-duration", lease, "--renew-deadline", renew, "--retry-period", retry]


@dataclass
class Replicas:
    """Starts leader-elected operators against one cluster; stops every one at teardown."""

    cluster: Cluster
    workdir: Path
    started: list[Process] = field(default_factory=list)
    names: dict[str, Process] = field(default_factory=dict)

    def start(self, identity: str, *extra: str, timings: Sequence[str] = SHORT) -> Process:
        process = Process(
            featurerollout_command(
                "run", "--kubeconfig", str(self.cluster.kubeconfig), "--metrics-port", "0", "--identity", identity,
                "--lease-namespace", "default", *timing_flags(timings), *extra,
            ),
            self.workdir / f"{identity}.log",
        ).start()
        self.started.append(process)
        self.names[identity] = process
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


def coordination(cluster: Cluster) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(cluster.api)


def holder(cluster: Cluster, lease: str = "featurerollout") -> str | None:
    try:
        found = coordination(cluster).read_namespaced_lease(lease, "default")
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found.spec.holder_identity if found.spec else None


def wait_holder(cluster: Cluster, among: Sequence[str], timeout: float, lease: str = "featurerollout",
                interval: float = 0.02) -> tuple[str, float]:
    """The identity (one of `among`) that holds the Lease, and when (monotonic) that was seen."""
    name = wait_until(lambda: (h := holder(cluster, lease)) in among and h, timeout,
                      f"one of {list(among)} to hold Lease {lease}", interval=interval)
    return str(name), time.monotonic()


def make_configmap(cluster: Cluster, name: str = "feature-flags") -> None:
    cluster.core.create_namespaced_config_map(
        "default", {"metadata": {"name": name}, "data": {KEY: '{"flags": {}}\n'}}
    )


def make_rollout(cluster: Cluster, name: str, configmap: str = "feature-flags", **spec: Any) -> None:
    spec.setdefault("flag", name)
    spec.setdefault("target", {"configMap": {"name": configmap}})
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, rollout_manifest(name, **spec))


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return dict(body.get("status") or {})


def event_reasons(cluster: Cluster, name: str) -> list[str]:
    items = [e for e in cluster.core.list_namespaced_event("default").items if e.involved_object.name == name]
    items.sort(key=lambda e: int(e.metadata.resource_version))
    return [str(e.reason) for e in items]
