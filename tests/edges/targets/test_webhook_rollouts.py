"""The webhook target through the real operator process, against a real flag service on loopback.

Issue "Step real traffic: ... external flag services over HTTP (httpx)": a ramp the service sees
stage by stage with the bearer token; 500s and timeouts hold the stage until the service
recovers; a wrong token (401) degrades and never promotes; a rollback while the service is down
reaches 0 once it is back; the token never appears in a log, an Event, the status or a metric.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from tests.edges.targets.flag_service import FlagService
from tests.edges.targets.own_metrics import metrics_text
from tests.support.cluster import (
    Cluster,
    OperatorFactory,
    Process,
    featurerollout_command,
    rollout_manifest,
    wait_until,
)
from tests.support.prometheus import free_port
from tests.support.secrets import USABLE

from featurerollout.edges.targets.webhook import MAX_ATTEMPTS

pytestmark = pytest.mark.integration

FRO = ("featurerollout.io", "v1alpha1")
TOKEN = "tok-7d1e5b9c0a4f"


@pytest.fixture
def service() -> Iterator[FlagService]:
    running = FlagService(token=TOKEN).start()
    try:
        yield running
    finally:
        running.stop()


def make_secret(cluster: Cluster, value: str) -> None:
    cluster.core.create_namespaced_secret("default", {
        "metadata": {"name": "flag-service", "labels": USABLE},
        "data": {"token": base64.b64encode(value.encode()).decode()},
    })


def make_rollout(cluster: Cluster, name: str, service: FlagService, stages: list[dict[str, Any]],
                 **webhook: Any) -> None:
    target = {"webhook": {"url": service.url, "secretRef": {"name": "flag-service", "key": "token"}, **webhook}}
    body = rollout_manifest(name, flag="new-checkout", target=target, stages=stages)
    cluster.custom.create_namespaced_custom_object(*FRO, "default", "featurerollouts", body)


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.custom.get_namespaced_custom_object(*FRO, "default", "featurerollouts", name)
    return dict(body.get("status") or {})


def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(lambda: (s := status(cluster, name)).get("phase") == phase and s, timeout,
                      f"{name} to reach {phase}")


def degraded(cluster: Cluster, name: str, reason: str) -> dict[str, Any] | None:
    return next((c for c in status(cluster, name).get("conditions", [])
                 if c["type"] == "Degraded" and c["status"] == "True" and c["reason"] == reason), None)


def events_of(cluster: Cluster, name: str) -> list[Any]:
    items = [e for e in cluster.core.list_namespaced_event("default").items if e.involved_object.name == name]
    return sorted(items, key=lambda e: int(e.metadata.resource_version))


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(featurerollout_command(*args, "--kubeconfig", str(cluster.kubeconfig), "-n", "default"),
                          capture_output=True, text=True, timeout=60)


def assert_secret_nowhere(secret: str, cluster: Cluster, name: str, operator: Process, metrics_port: int) -> None:
    """The token is in no log line, Event, status or metric of the operator."""
    places = {
        "the operator's log": operator.log(),
        "the Events": "\n".join(f"{e.reason} {e.message}" for e in cluster.core.list_namespaced_event("default").items),
        "the status": json.dumps(status(cluster, name)),
        "the operator's metrics": metrics_text(metrics_port),
    }
    for where, text in places.items():
        assert text, where  # each place was really read
        assert secret not in text, f"the token leaked into {where}"


def test_the_ramp_completes_and_the_service_saw_each_stage_weight_with_the_token(
    cluster: Cluster, operator: OperatorFactory, service: FlagService
) -> None:
    make_secret(cluster, TOKEN)
    metrics_port = free_port()
    process = operator("--metrics-port", str(metrics_port))
    make_rollout(cluster, "via-webhook", service, [{"weight": w, "duration": "1s"} for w in (10, 25, 50, 100)])
    final = wait_phase(cluster, "via-webhook", "Succeeded")
    assert service.accepted() == [10, 25, 50, 100]
    assert len(service.requests()) == 4  # nothing else was sent
    for seen in service.requests():
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.body is not None
        assert {k: seen.body[k] for k in ("flag", "namespace", "rollout")} == {
            "flag": "new-checkout", "namespace": "default", "rollout": "via-webhook"}
    assert final["currentWeight"] == 100
    shown = cli(cluster, "status", "via-webhook")
    assert "Target:   webhook PUT " + service.url + " (no read-back" in shown.stdout, shown.stdout
    assert_secret_nowhere(TOKEN, cluster, "via-webhook", process, metrics_port)


@pytest.mark.parametrize(
    ("mode", "reason", "words"),
    [
        ("fail", "WebhookFailed", 'answered 500 Internal Server Error: {"error": "backend exploded", '
                                  '"auth": "Bearer [redacted]"}'),
        ("hang", "WebhookUnreachable", "no answer within 1s"),
    ],
    ids=["500", "timeout"],
)
def test_a_failing_service_holds_the_stage_until_it_recovers(
    cluster: Cluster, operator: OperatorFactory, service: FlagService, mode: str, reason: str, words: str
) -> None:
    make_secret(cluster, TOKEN)
    metrics_port = free_port()
    process = operator("--metrics-port", str(metrics_port))
    make_rollout(cluster, "flaky", service, [{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "1s"},
                                             {"weight": 100}], timeout="1s")
    wait_until(lambda: service.accepted() == [10], 30, "the first stage")
    service.mode, service.hang_seconds = mode, 3
    condition = wait_until(lambda: degraded(cluster, "flaky", reason), 40, f"Degraded {reason}")
    assert words in condition["message"] and "not applied" in condition["message"]
    # No promotion while it fails: two rounds of attempts (each of MAX_ATTEMPTS) later, the
    # rollout still says 10%, and the service acknowledged nothing more.
    wait_until(lambda: len(service.requests()) >= 1 + 2 * MAX_ATTEMPTS, 60, "a second round of attempts")
    held = status(cluster, "flaky")
    assert (held["currentWeight"], held["currentStage"], held["phase"]) == (10, 0, "Progressing")
    assert service.accepted() == [10]
    warnings = [e for e in events_of(cluster, "flaky") if e.reason == reason]
    assert len(warnings) == 1 and warnings[0].type == "Warning" and words in warnings[0].message
    service.mode = "ok"
    final = wait_phase(cluster, "flaky", "Succeeded", timeout=90)
    assert service.accepted() == [10, 25, 100]
    assert final["currentWeight"] == 100
    assert not any(c["type"] == "Degraded" and c["status"] == "True" for c in final["conditions"])
    assert_secret_nowhere(TOKEN, cluster, "flaky", process, metrics_port)


def test_a_wrong_token_degrades_and_never_promotes(
    cluster: Cluster, operator: OperatorFactory, service: FlagService
) -> None:
    wrong = "wrong-4a7c2e91"
    make_secret(cluster, wrong)
    metrics_port = free_port()
    process = operator("--metrics-port", str(metrics_port))
    make_rollout(cluster, "locked-out", service, [{"weight": 10, "duration": "1s"}, {"weight": 100}])
    condition = wait_until(lambda: degraded(cluster, "locked-out", "WebhookRejected"), 30, "Degraded WebhookRejected")
    assert "answered 401 Unauthorized" in condition["message"]
    assert "check the token in spec.target.webhook.secretRef" in condition["message"]
    wait_until(lambda: len(service.requests()) >= 2, 30, "the operator's next attempt")
    assert service.accepted() == []
    assert status(cluster, "locked-out").get("currentWeight", 0) == 0
    assert [e.type for e in events_of(cluster, "locked-out") if e.reason == "WebhookRejected"] == ["Warning"]
    assert_secret_nowhere(wrong, cluster, "locked-out", process, metrics_port)


def test_a_rollback_while_the_service_is_down_reaches_0_once_it_is_back(
    cluster: Cluster, operator: OperatorFactory, service: FlagService
) -> None:
    make_secret(cluster, TOKEN)
    operator()
    make_rollout(cluster, "rollback-down", service, [{"weight": 10, "duration": "1s"},
                                                     {"weight": 50, "duration": "1h"}, {"weight": 100}])
    wait_until(lambda: service.accepted() == [10, 50], 30, "the second stage")
    service.stop()  # the service is down: connection refused
    aborted = cli(cluster, "abort", "rollback-down")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr  # the abort is handled at once
    # The command waited a few seconds for the 0% (manual.ROLLBACK_GRACE), then said what is true:
    # the service has not got it yet.
    assert "users may still be exposed at 50%" in aborted.stdout, aborted.stdout
    # RolledBack at once (engine.rollback_intent records it before the 0% is sent); then the
    # refused 0% is on record as being retried.
    pending = wait_until(
        lambda: (s := status(cluster, "rollback-down")).get("phase") == "RolledBack"
        and "retrying" in s.get("message", "") and s, 30, "RolledBack with the 0% being retried")
    assert pending["currentWeight"] == 50  # what the service still holds, as far as anyone knows
    assert "users may still be exposed at 50% until it does; retrying" in pending["message"]
    assert degraded(cluster, "rollback-down", "WebhookUnreachable") is not None
    assert "Aborted" not in [e.reason for e in events_of(cluster, "rollback-down")]  # not claimed yet
    service.start()  # back, on the same port
    wait_until(lambda: service.accepted()[-1:] == [0], 90, "the service to get 0%")
    final = wait_until(lambda: (s := status(cluster, "rollback-down")).get("currentWeight") == 0 and s, 30,
                       "the status to say 0%")
    assert final["phase"] == "RolledBack"
    assert "still be exposed" not in final["message"]
    assert service.accepted() == [10, 50, 0]
    wait_until(lambda: "Aborted" in [e.reason for e in events_of(cluster, "rollback-down")], 10, "the Aborted event")
