"""The operator end to end, without metrics: the real `featurerollout run` against the cluster.

Issue "The operator: FeatureRollouts step a flagd flag through their stages".
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import (
    OTHER_FLAG,
    SHARED_DOC,
    TWO_SECOND_STAGES,
    configmap_writes,
    document,
    events_of,
    make_configmap,
    make_rollout,
    rollout,
    status,
    wait_phase,
    weights_seen,
)
from tests.support.scenario import Given

pytestmark = pytest.mark.integration

def test_rollout_steps_through_exactly_each_stage_and_succeeds(given: Given) -> None:
    given = given.a_flag_document(other="untouched: true\n").an_operator()
    with weights_seen(given.cluster, "new-checkout") as seen:
        then = (given.when().a_rollout_is_created("new-checkout", stages=TWO_SECOND_STAGES)
                .it_reaches("Succeeded", timeout=40).then())
        wait_until(lambda: seen and seen[-1] == 100, 5, "the watch to see 100%")
    assert seen == [10, 25, 50, 100]
    then.the_weight_is(100).the_condition("Ready", "True").the_flag_document_contains(OTHER_FLAG)
    assert then.status["currentStage"] == 3
    assert then.status["observedGeneration"] == 1
    # Each weight held at least its 2 s, by the API server's own clock of the writes.
    writes = [w["time"] for w in configmap_writes(then.cluster)]
    assert len(writes) == 4
    for earlier, later in itertools.pairwise(writes):
        assert later - earlier >= 2.0
    assert json.loads(document(then.cluster))["flags"]["dark-mode"] == {
        "state": "ENABLED", "variants": {"a": 1.0}, "defaultVariant": "a"
    }
    assert then.cluster.core.read_namespaced_config_map("feature-flags", "default").data["other"] == "untouched: true\n"


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


def test_invalid_flagd_document_degrades_and_is_left_untouched(given: Given) -> None:
    broken = '{"flags": {"dark-mode": {"state": "ENABLED",,}}'
    then = (given.a_flag_document(broken).an_operator()
            .when().a_rollout_is_created("blocked", stages=TWO_SECOND_STAGES).it_is_degraded()
            .then().the_condition("Degraded", "True", reason="InvalidDocument",
                                  says="ConfigMap default/feature-flags key flags.flagd.json is not a valid "
                                       "flagd document")
            .the_flag_document_is(broken).the_weight_is(0).the_warnings_are("InvalidDocument"))
    # Someone repairs the document: the rollout carries on from where it was.
    (then.when().the_flag_document_becomes(SHARED_DOC).its_weight_becomes(10)
     .then().the_flag_document_contains(OTHER_FLAG))


def test_missing_configmap_is_reported_not_created(given: Given) -> None:
    (given.an_operator()
     .when().a_rollout_is_created("typo", target={"configMap": {"name": "feature-flagz"}}).it_is_degraded()
     .then().the_condition("Degraded", "True", reason="TargetNotFound", says="feature-flagz")
     .that(lambda then: then.cluster.core.list_namespaced_config_map("default").items == [],
           "no ConfigMap was created"))


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


def test_deleting_a_rollout_leaves_the_flag_and_never_hangs(given: Given) -> None:
    (given.a_flag_document().an_operator()
     .when().a_rollout_is_created("going", stages=[{"weight": 25, "duration": "1h"}, {"weight": 100}])
     .its_weight_becomes(25, timeout=20)
     .then().that(lambda then: not rollout(then.cluster, "going")["metadata"].get("finalizers"), "no finalizer")
     .when().the_rollout_is_deleted().it_is_gone()
     .then().the_flag_weight_is(25))


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
