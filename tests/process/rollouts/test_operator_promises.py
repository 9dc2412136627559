"""Promises of the README that only the real operator process can keep, checked through it.

The real `featurerollout run` against the cluster fixture; the real Prometheus where analysis is
involved; the official flagd evaluator for what the featureFlag target writes. Only
`test_a_409_on_status_writes_loses_nothing` uses the sandbox's fault injection (its point).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import subprocess
import sys
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from featurerollout.edges.targets.flagd import flag_entry, read_flag_weight, set_flag_spec, weight_of
from tests.edges.metrics.servers import auth_proxy
from tests.process.analysis.test_analysis import Exporter, analysis, exporter, operator_metric, prometheus  # noqa: F401
from tests.process.analysis.test_providers_in_operator import in_background
from tests.support.cluster import REPO, Cluster, OperatorFactory, wait_until
from tests.support.prometheus import PrometheusServer, free_port
from tests.support.rollouts import (
    GROUP,
    PLURAL,
    VERSION,
    document,
    events_of,
    make_configmap,
    make_rollout,
    rollout,
    status,
    wait_phase,
    wait_rolled_back,
    weights_seen,
)
from tests.support.secrets import USABLE
from tests.support.windows import holds_for

pytestmark = pytest.mark.integration

OPENFEATURE_CRD = REPO / "tests" / "fixtures" / "crds" / "openfeature-featureflags.yaml"
OF_GROUP, OF_VERSION, OF_PLURAL = "core.openfeature.dev", "v1beta1", "featureflags"


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurerollout", *args, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=60,
    )


# --- the featureFlag target ----------------------------------------------------------------------


def install_openfeature_crd(cluster: Cluster) -> None:
    api = client.ApiextensionsV1Api(cluster.api)
    try:
        api.create_custom_resource_definition(yaml.safe_load(OPENFEATURE_CRD.read_text()))
    except client.ApiException as error:
        if error.status != 409:  # the real tier's session serves the fixture CRDs already
            raise
    wait_until(lambda: cluster.custom.list_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL)
               is not None, 20, "the FeatureFlag kind to be served")


def feature_flag(cluster: Cluster) -> dict[str, Any]:
    body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        OF_GROUP, OF_VERSION, "default", OF_PLURAL, "feature-flags")
    return body


def test_the_feature_flag_target_writes_a_flag_spec_that_flagd_serves_at_each_weight(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    install_openfeature_crd(cluster)
    others = {
        "dark-mode": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
                      "targeting": {"fractional": [["a", 1], ["b", 1]]}},
    }
    cluster.custom.create_namespaced_custom_object(OF_GROUP, OF_VERSION, "default", OF_PLURAL, {
        "apiVersion": f"{OF_GROUP}/{OF_VERSION}", "kind": "FeatureFlag",
        "metadata": {"name": "feature-flags"}, "spec": {"flagSpec": {"flags": others}},
    })
    original = feature_flag(cluster)
    operator()
    ramp = [0.5, 33.3, 100]
    make_rollout(cluster, "new-checkout", target={"featureFlag": {"name": "feature-flags"}},
                 stages=[{"weight": 0.5, "duration": "2s"}, {"weight": 33.3, "duration": "2s"}, {"weight": 100}])
    # Every flagSpec the object shows, read back from the API server, until the rollout ends.
    specs: list[dict[str, Any]] = []

    def record() -> bool:
        spec = feature_flag(cluster)["spec"]["flagSpec"]
        if spec["flags"].get("new-checkout") and (not specs or specs[-1] != spec):
            specs.append(spec)
        return status(cluster, "new-checkout").get("phase") == "Succeeded"

    wait_until(record, 40, "the rollout to succeed", interval=0.05)
    record()
    assert [weight_of(s["flags"]["new-checkout"]) for s in specs] == ramp
    keys = [f"user-{i}" for i in range(20_000)]
    for weight, spec in zip(ramp, specs, strict=True):
        # Exactly what the pure builder writes on the original object: every other flag untouched.
        expected = set_flag_spec(copy.deepcopy(original), "new-checkout", weight)
        assert expected is not None and spec == expected["spec"]["flagSpec"]
        assert spec["flags"]["new-checkout"] == flag_entry(weight)
        # ... and the official flagd evaluator serves it at that weight.
        core = FlagdCore()
        core.set_flags(copy.deepcopy(spec))
        share = sum(core.resolve_boolean_value("new-checkout", False, EvaluationContext(targeting_key=k)).value
                    is True for k in keys) / len(keys)
        p = weight / 100
        assert abs(share - p) <= 5 * math.sqrt(p * (1 - p) / len(keys)) + 1e-9, (weight, share)
    assert status(cluster, "new-checkout")["currentWeight"] == 100


# --- 409 Conflict on the status write (sandbox fault injection) ---------------------------------


@pytest.mark.sandbox_only("injects 409 Conflict with the sandbox's fault injection")
def test_a_409_on_status_writes_loses_nothing(cluster: Cluster, operator: OperatorFactory) -> None:
    """Every other status write answers 409 Conflict, as if someone else had just written. The
    README promises that the write carries the resourceVersion read, and that a conflict makes
    the operator look again instead of overwriting: the rollout still steps through each stage
    once, and announces each step once. Needs the sandbox's fault injection."""
    make_configmap(cluster)
    fault = cluster.control.add_fault(verbs=["update", "patch"], resource="featurerollouts",
                                      subresource="status", every=2, status=409)
    operator()
    with weights_seen(cluster, "contested") as seen:
        make_rollout(cluster, "contested", stages=[{"weight": 10, "duration": "1s"}, {"weight": 50, "duration": "1s"},
                                                    {"weight": 100}])
        final = wait_phase(cluster, "contested", "Succeeded", timeout=60)
        wait_until(lambda: seen and seen[-1] == 100, 5, "the watch to see 100%")
    assert seen == [10, 50, 100]
    assert final["currentWeight"] == 100 and final["currentStage"] == 2
    assert next(f for f in cluster.control.faults() if f["id"] == fault["id"])["fired"] > 0
    reasons = wait_until(lambda: (r := [e.reason for e in events_of(cluster, "contested")])
                         and r[-1] == "Succeeded" and r, 10, "the Succeeded event")
    assert reasons == ["Started", "StageAdvanced", "StageAdvanced", "Succeeded"]


# --- secrets and the JSON log --------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_no_secret_value_reaches_the_log_events_status_or_metrics_and_the_json_log_is_json(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
) -> None:
    token, wrong, password = "tok-5b3c1f9e77", "wrong-a81d0c44e2", "pw-0e7d2a6c19"
    make_configmap(cluster)
    exporter.set("guarded", 0.0)
    for name, data in {"right": {"token": b64(token)}, "wrong": {"token": b64(wrong)},
                       "basic": {"username": b64("me"), "password": b64(password)}}.items():
        cluster.core.create_namespaced_secret("default", {"metadata": {"name": name, "labels": USABLE}, "data": data})
    port = free_port()
    with in_background(lambda: auth_proxy(prometheus.url, {"Authorization": f"Bearer {token}"})) as proxy:
        process = operator("--log-format", "json", "--log-level", "debug", "--metrics-port", str(port))
        for name, secret in (("guarded", "right"), ("refused", "wrong"), ("basic", "basic")):
            spec = analysis(prometheus, consecutiveErrorLimit=2)
            spec["prometheus"] = {"address": proxy.url, "auth": {"secretName": secret}}
            # One flag each (one FeatureRollout per flag); only "guarded" is ever measured.
            make_rollout(cluster, name, flag=name, stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}],
                         analysis=spec)
        wait_phase(cluster, "guarded", "Succeeded", timeout=40)
        # The refused ones error until their limit, then roll back: their messages went everywhere.
        wait_phase(cluster, "refused", "RolledBack", timeout=40)
        wait_phase(cluster, "basic", "RolledBack", timeout=40)
        wait_until(lambda: any(e.reason == "RolledBack" for e in events_of(cluster, "basic")), 10, "the Event")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    log = process.log()
    events = json.dumps([e.to_dict() for e in cluster.core.list_namespaced_event("default").items], default=str)
    statuses = json.dumps([rollout(cluster, n) for n in ("guarded", "refused", "basic")])
    assert "401" in statuses  # the refusal itself is reported...
    for value in (token, wrong, password, b64(token), b64(wrong), b64(password)):
        for where, text in (("the operator's log", log), ("Events", events), ("status", statuses),
                            ("the operator's metrics", metrics)):
            assert value not in text, f"a secret's value is in {where}"  # ... its credentials never
    # --log-format json: every line the operator wrote is one JSON object with a message.
    lines = [line for line in log.splitlines() if line.strip()]
    assert len(lines) > 10
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict) and "message" in record, line
    # ... the operator's own decision lines included, not only Kopf's.
    assert any(json.loads(line)["message"].startswith("default/refused: rolled back") for line in lines)


# --- the operator's own metrics ------------------------------------------------------------------


def test_the_operators_own_metrics(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("measured", 0.0125)
    port = free_port()
    operator("--metrics-port", str(port))
    measured = {"namespace": "default", "name": "measured"}
    make_rollout(cluster, "measured", stages=[{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "1h"},
                                              {"weight": 100}], analysis=analysis(prometheus))
    make_rollout(cluster, "missing", target={"configMap": {"name": "no-such-configmap"}})
    wait_until(lambda: status(cluster, "measured").get("currentStage") == 1, 30, "the second stage")
    wait_until(lambda: operator_metric(port, "featurerollout_stage", **measured) == 1, 10, "featurerollout_stage 1")
    wait_until(lambda: operator_metric(port, "featurerollout_metric_value", metric="error-rate", **measured)
               == 0.0125, 20, "featurerollout_metric_value")
    wait_until(lambda: operator_metric(port, "featurerollout_target_errors_total", namespace="default",
                                       name="missing", reason="TargetNotFound") >= 1, 20,
               "featurerollout_target_errors_total{reason=TargetNotFound}")
    writes = operator_metric(port, "featurerollout_status_writes_total")
    reconciles = operator_metric(port, "featurerollout_reconcile_duration_seconds_count")
    assert writes >= 2  # at least the Started and the StageAdvanced writes of `measured`
    assert reconciles >= writes / 2
    assert operator_metric(port, "featurerollout_reconcile_duration_seconds_sum") > 0
    # A new stage is one more status write, and more reconciles.
    cli(cluster, "promote", "measured", "-n", "default")
    wait_until(lambda: status(cluster, "measured").get("currentStage") == 2, 20, "the promotion")
    wait_until(lambda: operator_metric(port, "featurerollout_status_writes_total") > writes, 10, "one more write")
    assert operator_metric(port, "featurerollout_reconcile_duration_seconds_count") > reconciles


# --- a spec change and a pause, through the real process ----------------------------------------


def test_a_spec_change_on_a_running_rollout_keeps_the_weight_and_moves_on(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    operator()
    with weights_seen(cluster, "edited") as seen:
        make_rollout(cluster, "edited", stages=[{"weight": 25, "duration": "1h"}, {"weight": 100}])
        wait_until(lambda: status(cluster, "edited").get("currentWeight") == 25, 30, "25%")
        # New stages: the highest at or below 25% is 20%; it holds 2 s from the change, then 60%.
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "edited", {
            "spec": {"stages": [{"weight": 10, "duration": "1h"}, {"weight": 20, "duration": "2s"},
                                {"weight": 60, "duration": "1h"}, {"weight": 100}]}})
        changed = wait_until(lambda: (s := status(cluster, "edited")).get("observedGeneration") == 2 and s, 20,
                             "the change to be seen")
        assert (changed["currentStage"], changed["currentWeight"]) == (1, 25)  # exposure is never taken away
        wait_until(lambda: status(cluster, "edited").get("currentWeight") == 60, 20, "the next new stage")
        wait_until(lambda: seen and seen[-1] == 60, 5, "the watch to see 60%")
    assert seen == [25, 60]  # never lower, never 20%
    reasons = [e.reason for e in events_of(cluster, "edited")]
    assert reasons.count("SpecChanged") == 1 and reasons[-1] == "StageAdvanced"


def test_a_paused_rollout_is_still_analysed_and_rolled_back(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("held", 0.0)
    operator()
    make_rollout(cluster, "held", stages=[{"weight": 10, "duration": "2s"}, {"weight": 100}],
                 analysis=analysis(prometheus, failure_limit=1))
    wait_until(lambda: status(cluster, "held").get("currentWeight") == 10, 30, "the first stage")
    done = cli(cluster, "pause", "held", "-n", "default")
    assert done.returncode == 0, done.stderr
    # Paused past the 2 s hold: no promotion, and the analysis keeps running (evaluatedAt moves).
    first = status(cluster, "held")["metrics"][0]["evaluatedAt"]
    holds_for(lambda: (s := status(cluster, "held"))["phase"] == "Paused" and s["currentWeight"] == 10, 3,
              "the pause at 10%")
    assert status(cluster, "held")["metrics"][0]["evaluatedAt"] != first
    # The budget breaks while paused: rolled back to 0% all the same.
    exporter.set("held", 0.5)
    final = wait_rolled_back(cluster, "held", timeout=30)
    assert final["currentWeight"] == 0
    assert read_flag_weight(document(cluster), "held") == 0

