"""Gates through the real operator process, on the real kube-apiserver (issue 12, acceptance):

- a pre-exposure webhook gate answering 500 keeps the flag at 0% with a clear status; 200 lets it start;
- an approval gate before stage 3 holds at stage 2 until `featurerollout approve`, and a `kubectl apply`
  of the original manifest afterwards does not undo the approval;
- a breach while waiting at a gate still rolls back within the usual bound;
- every manual request from the phase Waiting.
Real HTTP receivers on loopback, the real CLI and kubectl, a real Prometheus for the breach.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.process.analysis.test_analysis import (  # noqa: F401 (exporter and prometheus are fixtures)
    Exporter,
    analysis,
    exporter,
    prometheus,
    wait_for_series,
)
from tests.process.gates.receiver import GateReceiver
from tests.process.rollouts.test_status_truth import cli, cm_weight
from tests.support.cluster import Cluster, OperatorFactory, rollout_manifest, wait_until
from tests.support.prometheus import PrometheusServer
from tests.support.rollouts import (
    document,
    events_of,
    make_configmap,
    make_rollout,
    status,
    wait_phase,
    wait_rolled_back,
)
from tests.support.secrets import USABLE
from tests.support.windows import holds_for

pytestmark = pytest.mark.integration

TOKEN = "gate-tok-93b1c0d7e2"


@pytest.fixture
def receiver() -> Iterator[GateReceiver]:
    running = GateReceiver().start()
    try:
        yield running
    finally:
        running.stop()


def gate_events(cluster: Cluster, name: str) -> list[Any]:
    return events_of(cluster, name)


def test_a_pre_exposure_webhook_gate_answering_500_keeps_0_percent_and_200_lets_it_start(
    cluster: Cluster, operator: OperatorFactory, receiver: GateReceiver, kubectl: Any
) -> None:
    make_configmap(cluster)
    cluster.core.create_namespaced_secret("default", {
        "metadata": {"name": "checks", "labels": USABLE}, "data": {"token": base64.b64encode(TOKEN.encode()).decode()}})
    operator()
    gate = {"name": "smoke", "before": "Start",
            "webhook": {"url": receiver.url, "secretRef": {"name": "checks", "key": "token"}, "timeout": "2s"}}
    make_rollout(cluster, "smoked", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}], gates=[gate])

    waiting = wait_until(lambda: (s := status(cluster, "smoked")).get("phase") == "Waiting"
                         and "answered 500" in (s.get("gate") or {}).get("message", "") and s, 30,
                         "the rollout to wait at the smoke gate, with its answer")
    # Nothing exposed: the flag has no entry at all, and the status says why, in words.
    assert read_flag_weight(document(cluster), "smoked") is None
    assert waiting["currentWeight"] == 0 and "startedAt" not in waiting
    assert waiting["gate"]["name"] == "smoke" and waiting["gate"]["before"] == "Start"
    assert "since" in waiting["gate"]
    message = waiting["message"]
    assert "webhook gate 'smoke' before the first exposure" in message and "nothing exposed" in message
    assert "answered 500 Internal Server Error" in message
    # The receiver got the contract's JSON with the bearer token ...
    body, headers = receiver.seen[0]
    assert body == {"rollout": "smoked", "namespace": "default", "flag": "smoked", "stage": 0, "weight": 0,
                    "gate": "smoke"}
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/json"
    # ... and echoed it in its 500, which never reaches the status or an Event.
    assert TOKEN not in json.dumps(status(cluster, "smoked")) and "[redacted]" in waiting["gate"]["message"]
    events = wait_until(lambda: (found := gate_events(cluster, "smoked"))
                        and "WaitingForGate" in [e.reason for e in found] and found, 10, "the WaitingForGate event")
    assert [e.reason for e in events].count("WaitingForGate") == 1
    assert all(TOKEN not in (e.message or "") for e in events)
    progressing = next(c for c in waiting["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "WaitingForGate")
    # A person sees it: `kubectl get fro` shows the phase, `featurerollout status` the gate and since when.
    table = kubectl("get", "fro", "smoked", "-n", "default").stdout
    assert "Waiting" in table, table
    shown = cli(cluster, "status", "smoked")
    assert shown.returncode == 0, shown.stderr
    assert "Phase:    Waiting" in shown.stdout
    assert "Gate:     waiting for webhook gate 'smoke' before the first exposure since " in shown.stdout
    assert "answered 500" in shown.stdout and TOKEN not in shown.stdout

    # Still closed, it is asked again (every 10 s without analysis) and holds 0%.
    wait_until(lambda: receiver.asked() >= 2, 25, "the gate asked again")
    assert read_flag_weight(document(cluster), "smoked") is None

    receiver.code = 200
    started = wait_until(lambda: (s := status(cluster, "smoked")).get("currentWeight") == 10 and s, 25,
                         "the rollout to start once the gate answers 200")
    assert started["phase"] == "Progressing" and "gate" not in started
    assert read_flag_weight(document(cluster), "smoked") == 10
    assert [g["name"] for g in started["openedGates"]] == ["smoke"]
    # (Events follow the status write: wait for them, don't race them.)
    reasons = wait_until(lambda: (r := [e.reason for e in gate_events(cluster, "smoked")]) and "Started" in r and r,
                         10, "the Started event")
    assert reasons.index("GateOpened") < reasons.index("Started")
    asked = receiver.asked()
    holds_for(lambda: receiver.asked() == asked, 3, "no more asks once the gate opened")


def test_an_approval_gate_before_stage_3_holds_at_stage_2_until_approved_and_a_reapply_does_not_undo_it(
    cluster: Cluster, operator: OperatorFactory, kubectl: Any, tmp_path: Path
) -> None:
    make_configmap(cluster)
    operator()
    manifest = rollout_manifest(
        "approved", flag="approved", target={"configMap": {"name": "feature-flags"}},
        stages=[{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "2s"},
                {"weight": 50, "duration": "1h"}, {"weight": 100}],
        gates=[{"name": "ok-50", "before": "Stage", "stage": 3, "approval": {}}],
    )
    path = tmp_path / "approved.yaml"
    path.write_text(yaml.safe_dump(manifest))
    kubectl("apply", "-f", str(path))

    waiting = wait_phase(cluster, "approved", "Waiting", timeout=30)
    assert (waiting["currentWeight"], waiting["stage"]) == (25, "2/4")
    assert waiting["gate"]["name"] == "ok-50" and waiting["gate"]["kind"] == "approval"
    assert "run `featurerollout approve`" in waiting["message"]
    # It holds at 25% well past stage 2's hold.
    holds_for(lambda: (s := status(cluster, "approved"))["phase"] == "Waiting" and s["currentWeight"] == 25
              and cm_weight(cluster, "approved") == 25, 3, "held at stage 2")
    reasons = [e.reason for e in gate_events(cluster, "approved")]  # the wait began seconds ago
    assert reasons.count("WaitingForApproval") == 1, reasons

    result = cli(cluster, "approve", "approved")
    assert result.returncode == 0, (result.stdout, result.stderr)
    approved = status(cluster, "approved")
    request_id = approved["lastRequest"]["id"]
    assert approved["lastRequest"]["action"] == "approve" and approved["lastRequest"]["outcome"] == "Done"
    assert (approved["phase"], approved["currentWeight"]) == ("Progressing", 50)
    assert cm_weight(cluster, "approved") == 50
    [record] = approved["openedGates"]
    assert (record["name"], record["before"], record["requestId"]) == ("ok-50", "Stage 3", request_id)
    assert "at" in record

    # A GitOps sync re-applies the original manifest: the approval, the stage and the weight stay.
    kubectl("apply", "-f", str(path))
    holds_for(lambda: (s := status(cluster, "approved"))["phase"] == "Progressing" and s["currentWeight"] == 50
              and cm_weight(cluster, "approved") == 50
              and [g["requestId"] for g in s.get("openedGates", [])] == [request_id], 3,
              "the approval after the re-apply")

    # Nothing left to approve: ignored, with the reason, exit code 4.
    again = cli(cluster, "approve", "approved")
    assert again.returncode == 4, (again.stdout, again.stderr)
    assert "approve ignored: no approval gate is waiting" in again.stderr
    assert status(cluster, "approved")["currentWeight"] == 50


def test_a_breach_while_waiting_at_a_gate_rolls_back_within_the_usual_bound(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("gated", 0.01)
    operator()
    failure_limit, interval = 1, 1.0
    make_rollout(
        cluster, "gated",
        stages=[{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "1h"}, {"weight": 100}],
        analysis=analysis(prometheus, failure_limit=failure_limit),
        gates=[{"name": "ok-25", "before": "Stage", "stage": 2, "approval": {}}],
    )
    wait_until(lambda: status(cluster, "gated").get("phase") == "Waiting", 30, "the rollout to wait at ok-25")
    assert cm_weight(cluster, "gated") == 10
    exporter.set("gated", 0.4)
    breach_seen = wait_for_series(prometheus, 'max(demo_error_ratio{flag="gated"})', lambda v: v > 0.05)
    wait_until(lambda: read_flag_weight(document(cluster), "gated") == 0, 30, "the flag to go back to 0%",
               interval=0.02)
    rolled_back = time.time()
    assert rolled_back - breach_seen <= (failure_limit + 1) * interval + 2
    final = wait_rolled_back(cluster, "gated", timeout=10)
    assert final["currentWeight"] == 0 and "gate" not in final
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "BudgetExceeded" and "0.4" in degraded["message"]


# --- every request from Waiting (the terminal-state x request table, for the new phase) ------------

# action -> (exit code, phase after, weight after). 0 done, 4 ignored.
FROM_WAITING: dict[str, tuple[int, str, float]] = {
    "approve": (0, "Progressing", 25),
    "promote": (0, "Progressing", 25),
    "pause": (0, "Paused", 10),
    "resume": (4, "Waiting", 10),
    "abort": (0, "RolledBack", 0),
    "retry": (4, "Waiting", 10),
}


def test_every_request_from_waiting(cluster: Cluster, operator: OperatorFactory) -> None:
    from featurerollout.api import ControlAction

    assert set(FROM_WAITING) == {a.value for a in ControlAction}
    make_configmap(cluster)
    operator()
    for action in FROM_WAITING:
        make_rollout(cluster, f"waiting-{action}",
                     stages=[{"weight": 10, "duration": "1s"}, {"weight": 25, "duration": "1h"}, {"weight": 100}],
                     gates=[{"name": "go", "before": "Stage", "stage": 2, "approval": {}}])
    for action in FROM_WAITING:
        wait_phase(cluster, f"waiting-{action}", "Waiting", timeout=30)
    for action, (code, phase, weight) in FROM_WAITING.items():
        name = f"waiting-{action}"
        result = cli(cluster, action, name)
        assert result.returncode == code, (action, result.stdout, result.stderr)
        if code == 4:
            assert f"{action} ignored: " in result.stderr
        settled = wait_until(lambda name=name, phase=phase, weight=weight: (  # type: ignore[misc]
            (s := status(cluster, name)).get("phase") == phase and s.get("currentWeight") == weight
            and cm_weight(cluster, name) == weight and s), 30, f"{name} {phase} at {weight}% after {action}")
        assert settled["lastRequest"]["outcome"] == {0: "Done", 4: "Ignored"}[code]
        assert ("gate" in settled) == (phase == "Waiting")
    time.sleep(2)  # nothing from the old state comes back at the next looks
    for action, (_, phase, weight) in FROM_WAITING.items():
        again = status(cluster, f"waiting-{action}")
        assert (again["phase"], again["currentWeight"]) == (phase, weight), (action, again)
