"""Secrets by consent through the real operator on the real API server (issue 21): a FeatureRollout
that names a Secret without the label `featurerollout.io/usable: "true"` (a gate's token, Prometheus
auth, a notification's URL) is refused with the label in the message, and the Secret's value
appears nowhere: not in the operator's log, Events, the status, its /metrics, or at a receiver."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.process.gates.receiver import GateReceiver
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.prometheus import free_port
from tests.support.rollouts import make_configmap, make_rollout, rollout, status, wait_phase
from tests.support.windows import holds_for

pytestmark = pytest.mark.integration

VALUE = "tok-unlabelled-3f8a2d61c0"


@pytest.fixture
def receiver() -> Iterator[GateReceiver]:
    running = GateReceiver(code=200).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_rollout_naming_an_unlabelled_secret_is_refused_and_its_value_appears_nowhere(
    cluster: Cluster, operator: OperatorFactory, receiver: GateReceiver
) -> None:
    make_configmap(cluster)
    encoded = base64.b64encode(VALUE.encode()).decode()
    url = base64.b64encode(receiver.url.encode()).decode()
    # Just as a careless (or hostile) author would name it: an ordinary Secret of the namespace.
    cluster.core.create_namespaced_secret("default", {
        "metadata": {"name": "prom-token"}, "data": {"token": encoded, "url": url}})
    port = free_port()
    process = operator("--log-level", "debug", "--metrics-port", str(port))
    stages = [{"weight": 10, "duration": "1h"}, {"weight": 100}]
    make_rollout(cluster, "gated", stages=stages, gates=[{
        "name": "smoke", "before": "Start",
        "webhook": {"url": receiver.url, "secretRef": {"name": "prom-token", "key": "token"}, "timeout": "2s"}}])
    make_rollout(cluster, "measured", stages=stages, analysis={
        "interval": "1s", "consecutiveErrorLimit": 100,
        "prometheus": {"address": receiver.url, "timeout": "2s", "auth": {"secretName": "prom-token"}},
        "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.05}],
    }, notifications=[{"type": "Webhook", "secretRef": {"name": "prom-token", "key": "url"},
                       "tokenSecretRef": {"name": "prom-token", "key": "token"}}])

    label = "is not labelled featurerollout.io/usable=true: the operator reads only Secrets labelled for it"
    gate: str = wait_until(lambda: label in (m := (status(cluster, "gated").get("gate") or {}).get("message") or "")
                           and m, 30, "the gate refused for its Secret")
    assert "Secret default/prom-token (spec.gates[0].webhook.secretRef) " + label in gate, gate
    metric: str = wait_until(lambda: (status(cluster, "measured").get("metrics") or [{}])[0].get("message"), 30,
                             "the metric refused for its Secret")
    assert "Secret default/prom-token (spec.analysis.prometheus.auth) " + label in metric, metric
    # The gate held the rollout at 0%; the measured one started (its Started notification was due).
    assert status(cluster, "gated")["currentWeight"] == 0
    wait_phase(cluster, "measured", "Progressing", timeout=20)
    holds_for(lambda: receiver.asked() == 0, 3, "nothing sent to the receiver (gate, Prometheus, notification)")
    wait_until(lambda: "not labelled featurerollout.io/usable=true" in process.log(), 10,
               "the notification's refusal in the log")

    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    log = process.log()
    events = json.dumps([e.to_dict() for e in cluster.core.list_namespaced_event("default").items], default=str)
    statuses = json.dumps([rollout(cluster, n) for n in ("gated", "measured")])
    for value in (VALUE, encoded):
        for where, text in (("the operator's log", log), ("Events", events), ("status", statuses),
                            ("the operator's metrics", metrics)):
            assert value not in text, f"the Secret's value is in {where}"
    assert receiver.seen == []
