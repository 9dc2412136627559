"""Issue 9: what the target really holds. The real operator process against the API server.

- Drift: the operator reads the flag back at each look (and at least every `--resync`), and puts
  a weight raised above its own back down, with an Event and a condition, finished rollouts
  included (a flag lowered by hand is never put back up: test_kill_switch.py).
- One owner per flag: a marker in the flag's flagd `metadata`; a second rollout never writes,
  and takes the flag over once the owner is deleted.
- A new rollout over an existing exposure adopts it, never lowering it.
- A change of target while active is refused; abort reaches the old target, retry the new one.
- `--metrics-port 0` binds a free port and says which.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.process.rollouts.test_status_truth import assert_tells_the_truth, cli, cm_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import (
    GROUP,
    KEY,
    PLURAL,
    VERSION,
    document,
    events_of,
    make_configmap,
    make_rollout,
    rollout,
    status,
    wait_degraded,
    wait_phase,
    weights_seen,
)

pytestmark = pytest.mark.integration

LONG_STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100}]


def read_flag_entry(text: str, flag: str) -> Any:
    """The flag's entry in a flagd document, read here without the operator's own code."""
    return (json.loads(text) if text.strip() else {}).get("flags", {}).get(flag)


def set_weight_by_hand(cluster: Cluster, flag: str, weight: int, configmap: str = "feature-flags") -> None:
    """Someone edits the flag's weight in the ConfigMap by hand (the rest of its entry kept)."""
    body = cluster.core.read_namespaced_config_map(configmap, "default")
    document_ = json.loads(body.data[KEY])
    document_["flags"][flag]["targeting"] = {"fractional": [["on", weight], ["off", 100 - weight]]}
    body.data[KEY] = json.dumps(document_, indent=2)
    cluster.core.replace_namespaced_config_map(configmap, "default", body)


def owner_of(cluster: Cluster, flag: str) -> str | None:
    entry = read_flag_entry(document(cluster), flag) or {}
    return (entry.get("metadata") or {}).get("featurerollout.io/owner")


def drift_repaired(cluster: Cluster, name: str) -> dict[str, Any]:
    """The status once it records a repair: the operator writes the target first and its status after,
    so a test that saw the weight on the target must still wait for the record."""
    return wait_until(lambda: (s := status(cluster, name)) and any(
        c["type"] == "TargetInSync" and c["reason"] == "DriftRepaired" for c in s.get("conditions", [])) and s,
        20, f"{name} to record the repair")


def test_drift_raised_on_a_finished_rollout_is_put_back_down_with_an_event_and_a_condition(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """Raised by hand above what the rollout set (an aborted rollout's 0%) is put back down. (A
    finished rollout switched OFF by hand is left off: tests/process/rollouts/test_kill_switch.py.)"""
    make_configmap(cluster)
    operator("--resync", "1")
    make_rollout(cluster, "done", stages=[{"weight": 50, "duration": "1s"}, {"weight": 100}])
    wait_phase(cluster, "done", "Succeeded")
    aborted = cli(cluster, "abort", "done")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    set_weight_by_hand(cluster, "done", 100)
    st = drift_repaired(cluster, "done")
    assert cm_weight(cluster, "done") == 0
    st = assert_tells_the_truth(cluster, "done")
    assert st["phase"] == "RolledBack" and st["halt"]["reason"] == "Aborted"
    synced = next(c for c in st["conditions"] if c["type"] == "TargetInSync")
    assert synced["reason"] == "DriftRepaired" and "held 100%" in synced["message"]
    drift = wait_until(lambda: [e for e in events_of(cluster, "done") if e.reason == "TargetDrift"], 10,
                       "the TargetDrift Event")
    assert len(drift) == 1 and drift[0].type == "Warning"
    assert "held 100% for flag 'done', more than the 0% this rollout set" in drift[0].message


def test_a_second_rollout_on_an_owned_flag_never_writes_and_takes_over_once_the_owner_is_deleted(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    operator("--resync", "1")
    make_rollout(cluster, "first", flag="shared", stages=LONG_STAGES)
    wait_until(lambda: cm_weight(cluster, "shared") == 10, 30, "the first rollout at 10%")
    assert owner_of(cluster, "shared") == "default/first"
    version = cluster.core.read_namespaced_config_map("feature-flags", "default").metadata.resource_version

    make_rollout(cluster, "second", flag="shared", stages=[{"weight": 5, "duration": "1h"}, {"weight": 100}])
    degraded = wait_degraded(cluster, "second")
    assert degraded["reason"] == "FlagOwnedElsewhere"
    assert "belongs to FeatureRollout default/first" in degraded["message"]
    time.sleep(3)  # several looks of both rollouts
    assert cluster.core.read_namespaced_config_map(
        "feature-flags", "default").metadata.resource_version == version, "the second rollout wrote"
    second = status(cluster, "second")
    assert second["phase"] == "Pending" and second.get("currentWeight", 0) == 0
    assert "waiting: flag 'shared'" in second["message"]
    assert [e.reason for e in events_of(cluster, "second")].count("FlagOwnedElsewhere") == 1

    # Deleting the owner releases the flag: the second adopts the 10% it finds (never lowers it).
    with weights_seen(cluster, "shared") as seen:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "first")
        wait_until(lambda: owner_of(cluster, "shared") == "default/second", 20, "the second to take over")
        wait_until(lambda: status(cluster, "second").get("phase") == "Progressing", 20, "the second to start")
    assert all(w is None or w >= 10 for w in seen), seen
    st = status(cluster, "second")
    assert (st["currentStage"], st["currentWeight"]) == (0, 10)
    assert next(c for c in st["conditions"] if c["type"] == "Degraded")["status"] == "False"
    started = next(e for e in events_of(cluster, "second") if e.reason == "Started")
    assert "already exposed 10%" in started.message


def test_a_recreated_rollout_adopts_the_exposure_it_finds_and_never_says_nothing_exposed(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """A GitOps prune and re-create of a finished rollout: same name, new uid, flag at 100%."""
    make_configmap(cluster)
    operator()
    stages = [{"weight": 10, "duration": "1s"}, {"weight": 100, "duration": "2s"}]
    make_rollout(cluster, "again", stages=stages)
    wait_phase(cluster, "again", "Succeeded")
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "again")
    wait_until(lambda: not [r for r in cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL)["items"] if r["metadata"]["name"] == "again"], 10, "the deletion")

    with weights_seen(cluster, "again") as seen:
        make_rollout(cluster, "again", stages=stages)
        wait_phase(cluster, "again", "Succeeded")
        time.sleep(1)
    assert all(w == 100 for w in seen if w is not None), seen
    started = next(e for e in events_of(cluster, "again") if e.reason == "Started"
                   and "adopts" in e.message)
    assert "already exposed 100%" in started.message

    # Paused at creation over an existing exposure: the status says what is exposed.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "again")
    wait_until(lambda: not [r for r in cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL)["items"] if r["metadata"]["name"] == "again"], 10, "the deletion")
    make_rollout(cluster, "again", stages=stages, paused=True)
    st = wait_phase(cluster, "again", "Paused")
    assert "nothing exposed" not in st["message"]
    assert "already exposes 100%" in st["message"]
    assert st["currentWeight"] == 100 == cm_weight(cluster, "again")


def test_a_change_of_target_while_active_is_refused_abort_reaches_the_old_target_retry_the_new(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    make_configmap(cluster, name="other-flags", doc="")
    operator()
    make_rollout(cluster, "mover", stages=LONG_STAGES)
    wait_until(lambda: cm_weight(cluster, "mover") == 10, 30, "10% on the first ConfigMap")
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "mover", {"spec": {"target": {"configMap": {"name": "other-flags"}}}})
    degraded = wait_degraded(cluster, "mover")
    assert degraded["reason"] == "TargetChanged"
    st = wait_phase(cluster, "mover", "Paused")
    assert st["target"]["target"]["configMap"]["name"] == "feature-flags"
    assert read_flag_entry(document(cluster, "other-flags"), "mover") is None, "the new target was written"
    refused = cli(cluster, "promote", "mover")
    assert refused.returncode == 3 and "spec.flag or spec.target changed" in refused.stderr

    aborted = cli(cluster, "abort", "mover")
    assert aborted.returncode == 0, aborted.stderr
    wait_until(lambda: cm_weight(cluster, "mover") == 0, 20, "0% on the old ConfigMap")
    assert read_flag_entry(document(cluster, "other-flags"), "mover") is None

    retried = cli(cluster, "retry", "mover")
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: cm_weight(cluster, "mover", "other-flags") == 10, 20, "10% on the new ConfigMap")
    # The status is written after the target: wait for the record, not just the weight.
    st = wait_until(lambda: (s := status(cluster, "mover")).get("currentWeight") == 10 and s, 20, "10% on record")
    assert st["phase"] == "Progressing" and st["target"]["target"]["configMap"]["name"] == "other-flags"
    assert cm_weight(cluster, "mover") == 0


def test_metrics_port_zero_binds_a_free_port_and_says_which(cluster: Cluster, operator: OperatorFactory) -> None:
    process = operator("--metrics-port", "0")
    line = wait_until(lambda: re.search(r"serving the operator's metrics on :(\d+)/metrics", process.log()), 30,
                      "the metrics line")
    port = int(line.group(1))
    assert port != 0
    assert "featurerollout_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    quiet = operator("--no-metrics")
    wait_until(lambda: "scheduler" in quiet.log().lower() or quiet.log().count("\n") > 2 or not quiet.running,
               30, "the second operator to start")
    assert quiet.running and "serving the operator's metrics" not in quiet.log()


def test_the_owner_marker_is_valid_flagd_flag_metadata(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(cluster, "marked", stages=LONG_STAGES)
    wait_until(lambda: cm_weight(cluster, "marked") == 10, 30, "10%")
    entry = json.loads(document(cluster))["flags"]["marked"]
    uid = rollout(cluster, "marked")["metadata"]["uid"]
    assert entry["metadata"] == {"featurerollout.io/owner": "default/marked", "featurerollout.io/owner-uid": uid}
