"""The operator end to end, without metrics: the real `featurerollout run` against the cluster.

Issue "The operator: FeatureRollouts step a flagd flag through their stages".
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, rollout_manifest, wait_until
from tests.support.watching import values_seen

pytestmark = pytest.mark.integration

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


def test_rollout_steps_through_exactly_each_stage_and_succeeds(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster, other="untouched: true\n")
    operator()
    with weights_seen(cluster, "new-checkout") as seen:
        make_rollout(cluster, "new-checkout", stages=TWO_SECOND_STAGES)
        final = wait_phase(cluster, "new-checkout", "Succeeded", timeout=40)
        wait_until(lambda: seen and seen[-1] == 100, 5, "the watch to see 100%")
    assert seen == [10, 25, 50, 100]
    assert final["currentWeight"] == 100
    assert final["currentStage"] == 3
    # Each weight held at least its 2 s, by the API server's own clock of the writes.
    writes = [w["time"] for w in configmap_writes(cluster)]
    assert len(writes) == 4
    for earlier, later in itertools.pairwise(writes):
        assert later - earlier >= 2.0
    assert json.loads(document(cluster))["flags"]["dark-mode"] == {
        "state": "ENABLED", "variants": {"a": 1.0}, "defaultVariant": "a"
    }
    assert OTHER_FLAG in document(cluster)
    assert cluster.core.read_namespaced_config_map("feature-flags", "default").data["other"] == "untouched: true\n"
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert final["observedGeneration"] == 1


@pytest.mark.sandbox_only("injects 409 Conflicts with the sandbox's fault injection")
def test_twenty_rollouts_share_one_configmap_without_lost_updates(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    # The first four ConfigMap writes answer 409 Conflict, as if someone else had just written. (Not
    # "every third": with one write per document and moment, 20 rollouts may make only two writes.)
    cluster.control.add_fault(verbs=["update", "patch"], resource="configmaps", every=1, times=4, status=409)
    operator()
    names = [f"flag-{i:02d}" for i in range(20)]
    for name in names:
        make_rollout(cluster, name, stages=[{"weight": 50, "duration": "1s"}, {"weight": 100}])
    for name in names:
        wait_phase(cluster, name, "Succeeded", timeout=90)
    flags = json.loads(document(cluster))["flags"]
    for name in names:
        assert read_flag_weight(document(cluster), name) == 100, name
    assert OTHER_FLAG in document(cluster)
    assert set(flags) == {"dark-mode", *names}
    assert cluster.control.faults()[0]["fired"] > 0


def test_kill_9_mid_stage_resumes_the_same_stage(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    first = operator()
    # The 25% stage is long enough for the restarted operator to be up (start-up takes up to ~7 s
    # on a loaded 2-core machine) well before it ends, so its end can be bounded tightly.
    hold = 12.0
    stages = [{"weight": 10, "duration": "2s"}, {"weight": 25, "duration": f"{hold:.0f}s"},
              {"weight": 50, "duration": "2s"}, {"weight": 100}]
    with weights_seen(cluster, "resilient") as seen:
        make_rollout(cluster, "resilient", stages=stages)
        before = wait_until(lambda: (s := status(cluster, "resilient")).get("currentStage") == 1 and s, 20,
                            "stage 2")
        # Mid-stage: the advance to stage 2 is fully recorded (status and its Event).
        wait_until(lambda: len(events_of(cluster, "resilient")) == 2, 5, "the StageAdvanced event")
        first.kill9()
        events_before = {e.metadata.name for e in events_of(cluster, "resilient")}
        time.sleep(1)  # the stage goes on without an operator: a restarted clock would move by >= 1 s
        operator()
        # Every stageStartedAt the 25% stage ever shows, up to its end, through the restart.
        starts: set[str] = set()

        def stage_over() -> bool:
            now = status(cluster, "resilient")
            if now.get("currentStage") == 1:
                starts.add(now["stageStartedAt"])
            return int(now.get("currentStage", 0)) >= 2

        wait_until(stage_over, hold + 20, "the end of the 25% stage", interval=0.1)
        final = wait_phase(cluster, "resilient", "Succeeded", timeout=40)
        wait_until(lambda: seen and seen[-1] == 100, 5, "the watch to see 100%")
    assert seen == [10, 25, 50, 100]
    # The status is written before its Event is posted: give the last Event a moment.
    after_restart = wait_until(
        lambda: (new := [e for e in events_of(cluster, "resilient") if e.metadata.name not in events_before])
        and new[-1].reason == "Succeeded" and new,
        10, "the Succeeded event",
    )
    # No old Event again: the restarted operator only announces what it did itself.
    assert [e.reason for e in after_restart] == ["StageAdvanced", "StageAdvanced", "Succeeded"]
    # The same stage clock: the restarted operator kept the stageStartedAt it found.
    assert before["stageStartedAt"] is not None
    assert starts == {before["stageStartedAt"]}
    writes = [w["time"] for w in configmap_writes(cluster)]
    assert writes[2] - writes[1] >= hold  # the 25% stage held its whole duration
    # ... and no longer than its duration plus a small margin: a stage clock restarted by the
    # restart (>= 1 s after the stage began) would end it at least hold + 1 s after its write.
    assert writes[2] - writes[1] < hold + 0.9
    assert final["currentWeight"] == 100


def events_of(cluster: Cluster, name: str) -> list[Any]:
    items = cluster.core.list_namespaced_event("default").items
    mine = [e for e in items if e.involved_object.name == name]
    return sorted(mine, key=lambda e: int(e.metadata.resource_version))  # the order they were stored in


def test_invalid_flagd_document_degrades_and_is_left_untouched(cluster: Cluster, operator: OperatorFactory) -> None:
    broken = '{"flags": {"dark-mode": {"state": "ENABLED",,}}'
    make_configmap(cluster, doc=broken)
    operator()
    make_rollout(cluster, "blocked", stages=TWO_SECOND_STAGES)
    degraded = wait_degraded(cluster, "blocked")
    assert degraded["reason"] == "InvalidDocument"
    assert "ConfigMap default/feature-flags key flags.flagd.json is not a valid flagd document" in degraded["message"]
    assert document(cluster) == broken
    assert status(cluster, "blocked").get("currentWeight", 0) == 0
    warnings = wait_until(lambda: [e for e in events_of(cluster, "blocked") if e.type == "Warning"], 10,
                          "a Warning event")
    assert [e.reason for e in warnings] == ["InvalidDocument"]
    # Someone repairs the document: the rollout carries on from where it was.
    cluster.core.patch_namespaced_config_map("feature-flags", "default", {"data": {KEY: SHARED_DOC}})
    wait_until(lambda: status(cluster, "blocked").get("currentWeight") == 10, 30, "the rollout to start")
    assert OTHER_FLAG in document(cluster)


def test_missing_configmap_is_reported_not_created(cluster: Cluster, operator: OperatorFactory) -> None:
    operator()
    make_rollout(cluster, "typo", target={"configMap": {"name": "feature-flagz"}})
    degraded = wait_degraded(cluster, "typo")
    assert degraded["reason"] == "TargetNotFound"
    assert "feature-flagz" in degraded["message"]
    assert cluster.core.list_namespaced_config_map("default").items == []


def test_nothing_is_written_while_nothing_changes(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(cluster, "steady", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}])
    wait_until(lambda: status(cluster, "steady").get("currentWeight") == 10, 20, "the first stage")
    # The first stage's last write is its Started Event, posted after the status: wait for it
    # itself (a fixed sleep let a late one count as an idle write on a loaded machine).
    wait_until(lambda: [e.reason for e in events_of(cluster, "steady")] == ["Started"], 20, "the Started event")
    cluster.log.clear_requests()
    time.sleep(4)
    writes = [r for r in cluster.log.requests() if r["verb"] in ("create", "update", "patch", "delete")]
    assert writes == []


def test_deleting_a_rollout_leaves_the_flag_and_never_hangs(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(cluster, "going", stages=[{"weight": 25, "duration": "1h"}, {"weight": 100}])
    wait_until(lambda: status(cluster, "going").get("currentWeight") == 25, 20, "the first stage")
    assert not rollout(cluster, "going")["metadata"].get("finalizers")
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "going")
    wait_until(lambda: not cluster.custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"],
               10, "the rollout to be gone")
    assert read_flag_weight(document(cluster), "going") == 25


def test_a_restart_with_nothing_changed_writes_nothing(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    # On the sandbox, slow target writes: the stage's clock starts when the write returns, a second
    # after the decision, and what the status says about the stage must agree with that start.
    latency = cluster.control.add_fault(action="latency", verbs=["update"], resource="configmaps",
                                        latency=1.1) if cluster.control else None
    first = operator()
    names = [f"calm-{i}" for i in range(10)]
    for name in names:
        make_rollout(cluster, name, stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}])
    for name in names:
        wait_until(lambda name=name: status(cluster, name).get("currentWeight") == 10, 30, f"{name} at 10%")
    time.sleep(1)
    first.kill9()
    if cluster.control and latency:
        cluster.control.remove_fault(latency["id"])
    cluster.log.clear_requests()
    operator()
    wait_until(lambda: {r["name"] for r in cluster.log.requests(resource="featurerollouts", verb="get")}
               >= set(names), 30, "the restarted operator to look at every rollout")
    time.sleep(1)
    writes = [(r["verb"], r["resource"], r["name"]) for r in cluster.log.requests()
              if r["verb"] in ("create", "update", "patch", "delete")]
    assert writes == []
