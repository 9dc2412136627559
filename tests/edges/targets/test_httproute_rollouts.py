"""The httpRoute target through the real operator process, on the real upstream HTTPRoute CRD.

Issue "Step real traffic: Gateway API HTTPRoute weights ...": a full ramp and a rollback to 0
where only the named pair of backendRefs changes; a concurrent writer's change survives; each
bad input gives its own Degraded reason and leaves the route unmodified; `featurerollout status`
shows what the route holds.
"""

from __future__ import annotations

import json
import subprocess
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.edges.targets.gateway import (
    GROUP,
    PLURAL,
    VERSION,
    create_route,
    get_route,
    install_httproute_crd,
    pair,
    pairs_seen,
    shop_route,
    without_pair_weights,
)
from tests.edges.targets.own_metrics import operator_metric
from tests.support.cluster import Cluster, OperatorFactory, featurerollout_command, rollout_manifest, wait_until
from tests.support.prometheus import free_port

from featurerollout.edges.targets.base import OWNERS_ANNOTATION

pytestmark = pytest.mark.integration

FRO = ("featurerollout.io", "v1alpha1")
ROUTE_TARGET = {"httpRoute": {"name": "shop", "rule": 0, "stableBackend": "checkout", "featureBackend": "checkout-new"}}
TWO_SECOND_STAGES = [{"weight": w, "duration": "2s"} for w in (10, 25, 50, 100)]


def make_rollout(cluster: Cluster, name: str, target: dict[str, Any] | None = None, **spec: Any) -> None:
    spec.setdefault("flag", "new-checkout")
    spec["target"] = target or ROUTE_TARGET
    cluster.custom.create_namespaced_custom_object(*FRO, "default", "featurerollouts", rollout_manifest(name, **spec))


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.custom.get_namespaced_custom_object(*FRO, "default", "featurerollouts", name)
    return dict(body.get("status") or {})


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 40) -> dict[str, Any]:
    return wait_until(lambda: (s := status(cluster, name)).get("phase") == phase and s, timeout,
                      f"{name} to reach {phase}")


def degraded(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return next((c for c in status(cluster, name).get("conditions", [])
                 if c["type"] == "Degraded" and c["status"] == "True"), None)


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(featurerollout_command(*args, "--kubeconfig", str(cluster.kubeconfig), "-n", "default"),
                          capture_output=True, text=True, timeout=60)


def test_a_full_ramp_moves_only_the_named_pair(cluster: Cluster, operator: OperatorFactory) -> None:
    install_httproute_crd(cluster)
    created = create_route(cluster, shop_route())
    operator()
    with pairs_seen(cluster) as seen:
        make_rollout(cluster, "checkout-ramp", stages=TWO_SECOND_STAGES)
        final = wait_phase(cluster, "checkout-ramp", "Succeeded")
        wait_until(lambda: seen and seen[-1] == (100, 0), 10, "the watch to see 100/0")
    assert seen == [(10, 90), (25, 75), (50, 50), (100, 0)]
    assert final["currentWeight"] == 100
    route = get_route(cluster)
    # Nothing else in the route moved: the third backendRef, the other rule, matches, filters,
    # hostnames, parentRefs, annotations. The operator added only its owner marker for this split.
    assert without_pair_weights(route) == without_pair_weights(created)
    assert route["spec"]["rules"][0]["backendRefs"][2] == created["spec"]["rules"][0]["backendRefs"][2]
    owners = json.loads(route["metadata"]["annotations"][OWNERS_ANNOTATION])
    assert owners["rules[0]/checkout-new"]["featurerollout.io/owner"] == "default/checkout-ramp"
    shown = cli(cluster, "status", "checkout-ramp")
    assert shown.returncode == 0, shown.stderr
    assert "Target:   HTTPRoute default/shop rule 0 holds 100% (checkout-new 100, checkout 0)" in shown.stdout


def test_a_fractional_stage_and_an_abort_roll_the_pair_back_to_0_and_100(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    install_httproute_crd(cluster)
    created = create_route(cluster, shop_route())
    operator()
    stages = [{"weight": 0.5, "duration": "1s"}, {"weight": 50, "duration": "1h"}, {"weight": 100}]
    with pairs_seen(cluster) as seen:
        make_rollout(cluster, "checkout-abort", stages=stages)
        wait_until(lambda: status(cluster, "checkout-abort").get("currentStage") == 1, 30, "stage 2 at 50%")
        shown = cli(cluster, "status", "checkout-abort")
        assert "holds 50% (checkout-new 50, checkout 50)" in shown.stdout, shown.stdout
        aborted = cli(cluster, "abort", "checkout-abort")
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        final = wait_until(lambda: (s := status(cluster, "checkout-abort")).get("phase") == "RolledBack"
                           and s.get("currentWeight") == 0 and s, 40, "the abort to be done at 0%")
        wait_until(lambda: seen and seen[-1] == (0, 100), 10, "the watch to see 0/100")
    assert seen == [(5, 995), (50, 50), (0, 100)]
    assert final["currentWeight"] == 0
    assert without_pair_weights(get_route(cluster)) == without_pair_weights(created)


def test_a_concurrent_writer_adding_a_rule_mid_rollout_is_not_lost(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    install_httproute_crd(cluster)
    create_route(cluster, shop_route())
    operator()
    stop = threading.Event()
    writes = {"done": 0, "conflicts": 0, "rule_added": False}

    def writer() -> None:
        # Another controller (or a person with kubectl) keeps writing the same route: it adds a
        # rule once, and bumps an annotation as often as it can, retrying on its own conflicts.
        while not stop.is_set():
            route = get_route(cluster)
            if not writes["rule_added"]:
                route["spec"]["rules"].append({
                    "matches": [{"path": {"type": "PathPrefix", "value": "/search"}}],
                    "backendRefs": [{"name": "search", "port": 80}],
                })
            annotations = route["metadata"].setdefault("annotations", {})
            annotations["writer/count"] = str(writes["done"] + 1)
            try:
                cluster.custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "shop", route)
            except ApiException as error:
                if error.status != 409:
                    raise
                writes["conflicts"] += 1
                continue
            writes["done"] += 1
            writes["rule_added"] = True

    thread = threading.Thread(target=writer, daemon=True)
    make_rollout(cluster, "checkout-busy", stages=[{"weight": w, "duration": "1s"} for w in (10, 25, 50, 100)])
    wait_until(lambda: status(cluster, "checkout-busy").get("currentWeight") == 10, 30, "the first stage")
    thread.start()
    try:
        wait_phase(cluster, "checkout-busy", "Succeeded", timeout=60)
    finally:
        stop.set()
        thread.join(30)
    route = get_route(cluster)
    paths = [r["matches"][0]["path"]["value"] for r in route["spec"]["rules"]]
    assert paths == ["/checkout", "/", "/search"]  # the writer's rule survived every operator write
    assert route["metadata"]["annotations"]["writer/count"] == str(writes["done"])
    assert pair(route) == (100, 0)
    assert writes["done"] > 0


@pytest.mark.sandbox_only("injects 409 Conflicts with the sandbox's fault injection")
def test_conflicting_writes_are_retried_on_409(cluster: Cluster, operator: OperatorFactory) -> None:
    """Fault injection (sandbox only): every 2nd HTTPRoute update answers 409 Conflict, as if
    someone had just written; the operator re-reads and re-applies its pair each time."""
    install_httproute_crd(cluster)
    create_route(cluster, shop_route())
    cluster.control.add_fault(verbs=["update"], resource="httproutes", every=1, times=3, status=409)
    operator()
    make_rollout(cluster, "checkout-409", stages=[{"weight": 50, "duration": "1s"}, {"weight": 100}])
    wait_phase(cluster, "checkout-409", "Succeeded")
    assert pair(get_route(cluster)) == (100, 0)
    assert cluster.control.faults()[0]["fired"] == 3


def _break_rule_index(route: dict[str, Any]) -> dict[str, Any]:
    return route  # the route is fine; the rollout names rule 5


def _drop_feature_backend(route: dict[str, Any]) -> dict[str, Any]:
    route["spec"]["rules"][0]["backendRefs"] = [r for r in route["spec"]["rules"][0]["backendRefs"]
                                                if r["name"] != "checkout-new"]
    return route


def _stable_is_not_a_service(route: dict[str, Any]) -> dict[str, Any]:
    ref = route["spec"]["rules"][0]["backendRefs"][0]
    ref.update({"group": "multicluster.x-k8s.io", "kind": "ServiceImport"})
    return route


@pytest.mark.parametrize(
    ("route_change", "rule", "reason", "words"),
    [
        (None, 0, "TargetNotFound", "HTTPRoute default/shop does not exist"),
        (_break_rule_index, 5, "RuleNotFound", "has 2 rules (spec.rules[0..1]), so spec.target.httpRoute.rule 5 "
                                               "is out of range"),
        (_drop_feature_backend, 0, "BackendNotFound", "has no backendRef named 'checkout-new' "
                                                      "(spec.target.httpRoute.featureBackend)"),
        (_stable_is_not_a_service, 0, "BackendNotService", "backendRef 'checkout' (spec.target.httpRoute."
                                                           "stableBackend) is kind ServiceImport of group "
                                                           "multicluster.x-k8s.io, not a Service"),
    ],
    ids=["route-missing", "rule-out-of-range", "backend-absent", "backend-not-a-service"],
)
def test_bad_input_degrades_with_its_reason_and_never_modifies_the_route(
    cluster: Cluster, operator: OperatorFactory, route_change: Any, rule: int, reason: str, words: str
) -> None:
    install_httproute_crd(cluster)
    before = create_route(cluster, route_change(shop_route())) if route_change else None
    metrics_port = free_port()
    operator("--metrics-port", str(metrics_port))
    target = {"httpRoute": {**ROUTE_TARGET["httpRoute"], "rule": rule}}
    make_rollout(cluster, "checkout-bad", target=target, stages=TWO_SECOND_STAGES)
    condition = wait_until(lambda: degraded(cluster, "checkout-bad"), 30, "a Degraded condition")
    assert condition["reason"] == reason
    assert words in condition["message"]
    # The operator tries again 5 s later: the retry must not touch the route either, and must not
    # raise a second alarm for the same error.
    wait_until(lambda: operator_metric(metrics_port, "featurerollout_target_errors_total", reason=reason) >= 2,
               30, "a second attempt")
    events = [e for e in cluster.core.list_namespaced_event("default").items
              if e.involved_object.name == "checkout-bad" and e.reason == reason]
    assert len(events) == 1 and events[0].type == "Warning"
    assert status(cluster, "checkout-bad").get("currentWeight", 0) == 0
    if before is None:
        with pytest.raises(ApiException) as missing:
            get_route(cluster)
        assert missing.value.status == 404  # not created either
    else:
        assert get_route(cluster)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_hand_edit_of_the_pair_is_put_back_with_an_event(cluster: Cluster, operator: OperatorFactory) -> None:
    """A hand edit that RAISES the feature backend is put back down (one that lowers it is a
    switch-off by hand, left as it is: tests/process/rollouts/test_kill_switch.py)."""
    install_httproute_crd(cluster)
    create_route(cluster, shop_route())
    first = operator()
    make_rollout(cluster, "checkout-owned", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}])
    wait_until(lambda: pair(get_route(cluster)) == (10, 90), 30, "the first stage")
    wait_until(lambda: status(cluster, "checkout-owned").get("currentWeight") == 10, 20, "10% on record")
    # No operator while the route is edited and shown: the CLI's view of the difference does not
    # race the operator's next look (a loaded machine took longer than one resync to print it).
    first.stop()
    route = get_route(cluster)
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        if ref["name"] in ("checkout-new", "checkout"):
            ref["weight"] = {"checkout-new": 90, "checkout": 10}[ref["name"]]
    cluster.custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "shop", route)
    shown = cli(cluster, "status", "checkout-owned")
    assert "holds 90% (checkout-new 90, checkout 10); differs from the status's 10%" in shown.stdout, shown.stdout
    # The operator notices at its first look and puts its own weight back.
    operator("--resync", "2")  # a look at the target at least every 2 s (default 300)
    wait_until(lambda: pair(get_route(cluster)) == (10, 90), 45, "the rollout's weight to be put back")
    # The Event follows the target write (it is posted once users have the weight back).
    warnings = wait_until(lambda: [e for e in cluster.core.list_namespaced_event("default").items
                                   if e.involved_object.name == "checkout-owned" and e.type == "Warning"],
                          10, "the TargetDrift Event")
    assert warnings[-1].reason == "TargetDrift" and "HTTPRoute default/shop" in warnings[-1].message
    assert "held 90% for flag 'new-checkout', more than the 10% this rollout set" in warnings[-1].message
