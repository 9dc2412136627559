"""Issue 19: the kill switch always wins. The real operator process against the API server.

A finished rollout that a person switches off by hand (0%, DISABLED, the entry removed; a route's
feature backend to 0) stays off through more than three `--resync` periods, on every target; an
active one switched off by hand stays off, pauses and says so; one raised by hand is put back down;
`featurerollout abort` on a finished rollout reaches 0% and `retry` ramps again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from featurerollout.edges.targets.flagd import weight_of
from tests.edges.targets.flag_service import FlagService
from tests.edges.targets.gateway import GROUP as ROUTES
from tests.edges.targets.gateway import PLURAL as ROUTE_PLURAL
from tests.edges.targets.gateway import VERSION as ROUTE_VERSION
from tests.edges.targets.gateway import create_route, get_route, install_httproute_crd, pair, shop_route
from tests.process.rollouts.test_operator_promises import (
    OF_GROUP,
    OF_PLURAL,
    OF_VERSION,
    feature_flag,
    install_openfeature_crd,
)
from tests.process.rollouts.test_status_truth import assert_tells_the_truth, cli, cm_weight
from tests.support.cluster import Cluster, OperatorFactory, rollout_manifest, wait_until
from tests.support.rollouts import KEY, events_of, make_configmap, make_rollout, status, wait_phase
from tests.support.windows import holds_for

pytestmark = pytest.mark.integration

RESYNC = 1.0  # seconds: --resync, the longest a rollout goes without a look at its target
PERIODS = 4  # the window in which nothing may be written: more than three resync periods
FINISHING = [{"weight": 50, "duration": "1s"}, {"weight": 100}]
LONG_STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100}]


def lowered_by_hand(cluster: Cluster, name: str) -> dict[str, Any]:
    """The status once it records the switch-off (the operator writes it after reading the target)."""
    return wait_until(lambda: (s := status(cluster, name)).get("halt", {}).get("reason") == "LoweredByHand" and s,
                      30, f"{name} to record the switch-off by hand")


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions", []) if c["type"] == type_)


def stays(version: Callable[[], str], what: str) -> None:
    """Nothing writes the target for more than three resync periods."""
    before = version()
    holds_for(lambda: version() == before, PERIODS * RESYNC, what, interval=0.2)


# --- the ConfigMap target ---------------------------------------------------------------------------


def switch_off(cluster: Cluster, flag: str, how: str) -> None:
    """A person switches the feature off in the flagd document, the way flag users always have."""
    body = cluster.core.read_namespaced_config_map("feature-flags", "default")
    document = json.loads(body.data[KEY])
    if how == "0%":
        document["flags"][flag]["targeting"] = {"fractional": [["on", 0], ["off", 100]]}
    elif how == "DISABLED":
        document["flags"][flag]["state"] = "DISABLED"
    else:  # the entry removed
        del document["flags"][flag]
    body.data[KEY] = json.dumps(document, indent=2)
    cluster.core.replace_namespaced_config_map("feature-flags", "default", body)


def configmap_version(cluster: Cluster) -> str:
    return str(cluster.core.read_namespaced_config_map("feature-flags", "default").metadata.resource_version)


@pytest.mark.parametrize("how", ["0%", "DISABLED", "removed"])
def test_a_finished_rollout_switched_off_by_hand_in_a_configmap_stays_off(
    cluster: Cluster, operator: OperatorFactory, how: str
) -> None:
    make_configmap(cluster)
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "done", stages=FINISHING)
    wait_phase(cluster, "done", "Succeeded")
    switch_off(cluster, "done", how)
    st = lowered_by_hand(cluster, "done")
    stays(lambda: configmap_version(cluster), f"the ConfigMap as the person left it ({how})")
    assert cm_weight(cluster, "done") == 0
    st = assert_tells_the_truth(cluster, "done")
    assert (st["phase"], st["currentWeight"]) == ("RolledBack", 0)
    assert "switched off by hand" in st["message"] and "featurerollout retry" in st["message"]
    synced = condition(st, "TargetInSync")
    assert (synced["status"], synced["reason"]) == ("False", "LoweredByHand")
    warnings = [e for e in events_of(cluster, "done") if e.reason == "LoweredByHand"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    assert "less than the 100% this rollout set" in warnings[0].message
    assert "TargetDrift" not in [e.reason for e in events_of(cluster, "done")]


def test_an_active_rollout_switched_off_by_hand_stays_off_pauses_and_resume_ramps_again(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "live", stages=LONG_STAGES)
    wait_until(lambda: status(cluster, "live").get("currentWeight") == 10, 30, "the first stage")
    promoted = cli(cluster, "promote", "live")
    assert promoted.returncode == 0, promoted.stderr
    wait_until(lambda: status(cluster, "live").get("currentWeight") == 50, 20, "50% on record")
    switch_off(cluster, "live", "0%")
    st = lowered_by_hand(cluster, "live")
    stays(lambda: configmap_version(cluster), "the ConfigMap as the person left it (0%)")
    st = assert_tells_the_truth(cluster, "live")
    assert (st["phase"], st["currentWeight"], st["currentStage"]) == ("Paused", 0, 0)
    assert "featurerollout resume` to ramp again from 10%" in st["message"]
    assert condition(st, "TargetInSync")["reason"] == "LoweredByHand"
    assert (condition(st, "Degraded")["status"], condition(st, "Degraded")["reason"]) == ("True", "LoweredByHand")
    assert [e.type for e in events_of(cluster, "live") if e.reason == "LoweredByHand"] == ["Warning"]

    resumed = cli(cluster, "resume", "live")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: (s := status(cluster, "live")).get("phase") == "Progressing" and s.get("currentWeight") == 10,
               20, "the ramp again from 10%")
    assert cm_weight(cluster, "live") == 10
    assert condition(status(cluster, "live"), "TargetInSync")["reason"] == "TakenBack"


def test_a_configmap_recreated_empty_mid_stage_is_not_refilled_the_rollout_pauses(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """Deleted: Degraded TargetNotFound, nothing created. Re-created empty: the person (or tool) left
    no entry, so the rollout pauses at 0% and writes nothing until `resume`."""
    make_configmap(cluster)
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "mid", stages=LONG_STAGES)
    wait_until(lambda: status(cluster, "mid").get("currentWeight") == 10, 30, "the first stage")
    cluster.core.delete_namespaced_config_map("feature-flags", "default")
    wait_until(lambda: condition(status(cluster, "mid"), "Degraded")["reason"] == "TargetNotFound", 20,
               "Degraded TargetNotFound")
    make_configmap(cluster, doc="")
    st = lowered_by_hand(cluster, "mid")
    stays(lambda: configmap_version(cluster), "the empty ConfigMap")
    assert cluster.core.read_namespaced_config_map("feature-flags", "default").data[KEY] == ""
    st = status(cluster, "mid")
    assert (st["phase"], st["currentWeight"]) == ("Paused", 0) and "held no entry" in st["message"]
    resumed = cli(cluster, "resume", "mid")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: status(cluster, "mid").get("currentWeight") == 10 and cm_weight(cluster, "mid") == 10, 20,
               "10% once resumed")


def test_raised_by_hand_is_put_back_down(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "up", stages=LONG_STAGES)
    wait_until(lambda: status(cluster, "up").get("currentWeight") == 10, 30, "the first stage")
    body = cluster.core.read_namespaced_config_map("feature-flags", "default")
    document = json.loads(body.data[KEY])
    document["flags"]["up"]["targeting"] = {"fractional": [["on", 90], ["off", 10]]}
    body.data[KEY] = json.dumps(document)
    cluster.core.replace_namespaced_config_map("feature-flags", "default", body)
    # The Event and the condition are on record once the status is written, after the target write.
    st = wait_until(lambda: (s := status(cluster, "up")) and any(
        c["type"] == "TargetInSync" and c["reason"] == "DriftRepaired" for c in s.get("conditions", [])) and s,
        20, "the repair on record")
    assert cm_weight(cluster, "up") == 10
    assert (st["phase"], st["currentWeight"]) == ("Progressing", 10)
    assert "held 90% for flag 'up', more than the 10% this rollout set" in condition(st, "TargetInSync")["message"]
    assert [e.type for e in events_of(cluster, "up") if e.reason == "TargetDrift"] == ["Warning"]


def test_abort_on_a_finished_rollout_reaches_zero_and_retry_ramps_again(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "again", stages=[{"weight": 50, "duration": "2s"}, {"weight": 100}])
    wait_phase(cluster, "again", "Succeeded")
    aborted = cli(cluster, "abort", "again")
    # Confirmed like any abort: the command returns once the target holds 0%.
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert "RolledBack: aborted by `featurerollout abort` at 100% after it Succeeded" in aborted.stdout
    assert cm_weight(cluster, "again") == 0
    st = assert_tells_the_truth(cluster, "again")
    assert (st["phase"], st["halt"]["reason"], st["lastRequest"]["outcome"]) == ("RolledBack", "Aborted", "Done")
    stays(lambda: configmap_version(cluster), "0% after the abort")
    retried = cli(cluster, "retry", "again")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_until(lambda: cm_weight(cluster, "again") == 50, 20, "the ramp again at 50%")
    wait_phase(cluster, "again", "Succeeded")
    assert cm_weight(cluster, "again") == 100


# --- the FeatureFlag target ---------------------------------------------------------------------------


def test_a_finished_rollout_switched_off_by_hand_in_a_featureflag_stays_off(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    install_openfeature_crd(cluster)
    cluster.custom.create_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL, {
        "apiVersion": f"{OF_GROUP}/{OF_VERSION}", "kind": "FeatureFlag",
        "metadata": {"name": "feature-flags"}, "spec": {"flagSpec": {"flags": {}}},
    })
    operator("--resync", str(RESYNC))
    make_rollout(cluster, "ff", target={"featureFlag": {"name": "feature-flags"}}, stages=FINISHING)
    wait_phase(cluster, "ff", "Succeeded")
    body = feature_flag(cluster)
    body["spec"]["flagSpec"]["flags"]["ff"]["state"] = "DISABLED"
    cluster.custom.replace_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL, "feature-flags", body)
    st = lowered_by_hand(cluster, "ff")
    stays(lambda: str(feature_flag(cluster)["metadata"]["resourceVersion"]), "the FeatureFlag as the person left it")
    assert feature_flag(cluster)["spec"]["flagSpec"]["flags"]["ff"]["state"] == "DISABLED"
    assert weight_of(feature_flag(cluster)["spec"]["flagSpec"]["flags"]["ff"]) == 0
    assert (st["phase"], st["currentWeight"]) == ("RolledBack", 0)


# --- the HTTPRoute target -------------------------------------------------------------------------------


def test_a_finished_rollout_switched_off_by_hand_in_an_httproute_stays_off(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    install_httproute_crd(cluster)
    create_route(cluster, shop_route())
    operator("--resync", str(RESYNC))
    target = {"httpRoute": {"name": "shop", "rule": 0, "stableBackend": "checkout", "featureBackend": "checkout-new"}}
    make_rollout(cluster, "route", flag="new-checkout", target=target, stages=FINISHING)
    wait_phase(cluster, "route", "Succeeded")
    assert pair(get_route(cluster)) == (100, 0)
    route = get_route(cluster)
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        if ref["name"] in ("checkout-new", "checkout"):
            ref["weight"] = {"checkout-new": 0, "checkout": 100}[ref["name"]]
    cluster.custom.replace_namespaced_custom_object(ROUTES, ROUTE_VERSION, "default", ROUTE_PLURAL, "shop", route)
    st = lowered_by_hand(cluster, "route")
    stays(lambda: str(get_route(cluster)["metadata"]["resourceVersion"]), "the route as the person left it")
    assert pair(get_route(cluster)) == (0, 100)
    assert (st["phase"], st["currentWeight"]) == ("RolledBack", 0)
    assert "HTTPRoute default/shop" in st["message"]


# --- the webhook target: it cannot be read back, so nothing is ever re-sent -----------------------------


@pytest.fixture
def service() -> Iterator[FlagService]:
    running = FlagService().start()
    try:
        yield running
    finally:
        running.stop()


def test_a_finished_webhook_rollout_switched_off_in_the_service_is_never_resent(
    cluster: Cluster, operator: OperatorFactory, service: FlagService
) -> None:
    operator("--resync", str(RESYNC))
    body = rollout_manifest("hook", flag="new-checkout", target={"webhook": {"url": service.url}}, stages=FINISHING)
    cluster.custom.create_namespaced_custom_object("featurerollout.io", "v1alpha1", "default", "featurerollouts",
                                                   body)
    wait_phase(cluster, "hook", "Succeeded")
    assert service.accepted() == [50, 100]
    # The person switches the flag off in the flag service itself (it has no read contract):
    # over more than three resync periods the operator sends nothing.
    sent = len(service.requests())
    holds_for(lambda: len(service.requests()) == sent, PERIODS * RESYNC, "no PUT to the flag service")
    # The kill switch the operator offers for a webhook: abort sends 0%, and retry ramps again.
    aborted = cli(cluster, "abort", "hook")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert service.accepted() == [50, 100, 0]
    retried = cli(cluster, "retry", "hook")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_phase(cluster, "hook", "Succeeded")
    assert service.accepted() == [50, 100, 0, 50, 100]
