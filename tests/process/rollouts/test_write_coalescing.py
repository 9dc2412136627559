"""Issue 13, "Write less under load": many rollouts sharing one flagd ConfigMap are written with
one write per document and moment, not one per rollout, and no update is lost. The real operator
process against the API server (the real kube-apiserver by default)."""

from __future__ import annotations

import json

import pytest

from tests.process.rollouts.test_status_truth import assert_tells_the_truth
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import (
    KEY,
    OTHER_FLAG,
    configmap_writes,
    document,
    make_configmap,
    make_rollout,
)

pytestmark = pytest.mark.integration

ROLLOUTS = 30
STAGES = [{"weight": 10, "duration": "2s"}, {"weight": 100}]
OTHER_KEY = "some: yaml\n  other team's: [1, 2]\n"


def weights(cluster: Cluster) -> dict[str, float | None]:
    flags = json.loads(document(cluster))["flags"]
    out: dict[str, float | None] = {}
    for name, entry in flags.items():
        fractional = (entry.get("targeting") or {}).get("fractional")
        out[name] = None if not fractional else float(next(w for v, w in fractional if v == "on"))
    return out


def phases(cluster: Cluster) -> dict[str, str]:
    items = cluster.custom.list_namespaced_custom_object("featurerollout.io", "v1alpha1", "default",
                                                        "featurerollouts")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def test_thirty_rollouts_in_one_configmap_are_written_together_and_none_is_lost(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster, other=OTHER_KEY)
    names = [f"flag-{i:02d}" for i in range(ROLLOUTS)]
    for name in names:  # all there before the operator starts: all due at the same moment
        make_rollout(cluster, name, stages=STAGES)
    operator()
    wait_until(lambda: set(phases(cluster).values()) == {"Succeeded"} and len(phases(cluster)) == ROLLOUTS,
               120, "every rollout to succeed")
    held = weights(cluster)
    assert {name: held.get(name) for name in names} == {name: 100.0 for name in names}
    for name in names:
        assert_tells_the_truth(cluster, name)
    assert OTHER_FLAG in document(cluster)
    assert cluster.core.read_namespaced_config_map("feature-flags", "default").data["other"] == OTHER_KEY

    writes = configmap_writes(cluster)
    conflicts = [r for r in cluster.log.requests(resource="configmaps", name="feature-flags")
                 if r["verb"] in ("update", "patch") and r["status"] == 409]
    # One writer per document in the process: no 409 from our own writers.
    assert conflicts == [], conflicts
    # 2 weights x 30 rollouts were 60 writes (and many 409s) one rollout at a time. Gathered per
    # moment, they are a few: the catch-up at 10% and the promotion to 100% each take one write,
    # or a few when the looks spread over more than one write's time on this loaded machine.
    assert len(writes) <= 12, [w["time"] for w in writes]


@pytest.mark.sandbox_only("injects 409 Conflicts and 503s with the sandbox's fault injection")
def test_conflicts_and_failed_writes_are_reread_and_every_rollout_still_gets_its_weight(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster, other=OTHER_KEY)
    # Every second ConfigMap write answers 409 Conflict, as if someone else had just written; and
    # the first write of all fails with a 503.
    cluster.control.add_fault(verbs=["update"], resource="configmaps", every=2, status=409)
    cluster.control.add_fault(verbs=["update"], resource="configmaps", times=1, status=503)
    names = [f"flag-{i:02d}" for i in range(20)]
    for name in names:
        make_rollout(cluster, name, stages=STAGES)
    operator()
    wait_until(lambda: set(phases(cluster).values()) == {"Succeeded"} and len(phases(cluster)) == len(names),
               120, "every rollout to succeed")
    assert {name: weights(cluster).get(name) for name in names} == {name: 100.0 for name in names}
    for name in names:
        assert_tells_the_truth(cluster, name)
    assert OTHER_FLAG in document(cluster)
    assert cluster.core.read_namespaced_config_map("feature-flags", "default").data[KEY]
    assert cluster.core.read_namespaced_config_map("feature-flags", "default").data["other"] == OTHER_KEY
    fired = [f["fired"] for f in cluster.control.faults()]
    assert all(count > 0 for count in fired), cluster.control.faults()
