"""Issue 9: the status never lies, and every request gets one outcome. Through the API server and
the real operator process (`featurerollout run`) and CLI.

- Every status field written, cleared, and read back through the API server (the write path the
  operator uses): a cleared field is gone, not left behind by a merge patch.
- Terminal and halted states (no analysis needed here: aborted, succeeded, failed), each followed
  by `resume`, `promote` and `retry`: the README's outcome, the CLI's exit code, and a message that
  agrees with the weight the target holds.
- `spec.paused` behaves like `featurerollout pause`: no new stage clock, no SpecChanged.
- A request that cannot be carried out is refused with a reason, once, and never fires later.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from featurerollout import api
from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
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
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LONG_STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100}]


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurerollout", *args, "-n", "default", "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=90,
    )


def cm_weight(cluster: Cluster, flag: str, configmap: str = "feature-flags") -> float:
    return read_flag_weight(document(cluster, configmap), flag) or 0.0


def pct(weight: float) -> str:
    return f"{weight:g}%"


def assert_tells_the_truth(cluster: Cluster, name: str, flag: str | None = None) -> dict[str, Any]:
    """The status agrees with what the target holds: the weight, and every weight its message names
    as held; `halt` exactly when the phase says the rollout stopped by itself or was aborted."""
    st = status(cluster, name)
    held = cm_weight(cluster, flag or name)
    assert st["currentWeight"] == held, (st, held)
    message = st.get("message", "")
    phase = st["phase"]
    if phase == "Progressing":
        assert "halt" not in st, st
        total = len(rollout(cluster, name)["spec"]["stages"])
        assert message.startswith(f"stage {st['currentStage'] + 1}/{total} at {pct(held)}"), (message, held)
        assert "rolled back" not in message and "holds" not in message.split(";")[0], message
    by_hand = st.get("halt", {}).get("reason") == "LoweredByHand"
    if phase == "RolledBack" and by_hand:  # a finished rollout switched off by hand: what the person left
        assert "by hand" in message and "nothing is written back" in message, st
    elif phase == "RolledBack":
        assert held == 0 and "halt" in st and "rolled back to 0%" in message + st["halt"]["message"], st
    if phase == "Succeeded":
        assert held == 100 and "halt" not in st, st
    for claimed in re.findall(r"holds (\d+(?:\.\d+)?)%", message):
        assert float(claimed) == held, (message, held)
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"] == "True") == ("halt" in st or phase == "Failed"), st
    return st


# --- every status field through the API server ---------------------------------------------------


def full_status() -> api.FeatureRolloutStatus:
    """A status with every optional field set, nested ones included."""
    return api.FeatureRolloutStatus.model_validate({
        "phase": "Paused", "currentStage": 1, "currentWeight": 25, "stage": "2/4",
        "stageStartedAt": NOW.isoformat(), "observedGeneration": 3, "message": "a message",
        "metrics": [{"name": "error-rate", "value": 0.5, "result": "Failed", "consecutiveFailures": 2,
                     "consecutiveErrors": 1, "message": "why", "evaluatedAt": NOW.isoformat()}],
        "conditions": [{"type": "Degraded", "status": "True", "reason": "BudgetExceeded", "message": "m",
                        "lastTransitionTime": NOW.isoformat(), "observedGeneration": 3}],
        "manualPause": True,
        "lastRequest": {"id": "r-1", "action": "retry", "handledAt": NOW.isoformat(), "outcome": "Refused",
                        "reason": "because"},
        "lastAnalysisAt": NOW.isoformat(), "startedAt": NOW.isoformat(), "finishedAt": NOW.isoformat(),
        "halt": {"reason": "BudgetExceeded", "message": "error-rate 0.5 > 0.01", "at": NOW.isoformat()},
        "specHash": "abc123",
        "target": {"flag": "f", "target": {"configMap": {"name": "feature-flags", "key": "k"}}},
        "gate": {"name": "ok-50", "kind": "approval", "before": "Stage 3", "since": NOW.isoformat(), "message": "m",
                 "checkedAt": NOW.isoformat(), "timedOut": True},
        "openedGates": [{"name": "smoke", "before": "Start", "at": NOW.isoformat(), "requestId": "r-0",
                         "message": "m"}],
        "shardLease": "featurerollout-shard-0-of-2",
    })


def clearings(full: api.FeatureRolloutStatus) -> list[tuple[str, api.FeatureRolloutStatus]]:
    """(what was cleared, the status with it cleared) for every field, top-level and nested."""
    cases: list[tuple[str, api.FeatureRolloutStatus]] = []
    fresh = api.FeatureRolloutStatus()
    for name, field in api.FeatureRolloutStatus.model_fields.items():
        if name == "phase":
            continue
        cases.append((field.alias or name, full.model_copy(update={name: getattr(fresh, name)})))
    metric = full.metrics[0]
    cases.append(("metrics[0].value", full.model_copy(update={"metrics": [metric.model_copy(update={"value": None})]})))
    cases.append(("metrics[0].message",
                  full.model_copy(update={"metrics": [metric.model_copy(update={"message": None})]})))
    condition = full.conditions[0]
    cases.append(("conditions[0].observedGeneration", full.model_copy(
        update={"conditions": [condition.model_copy(update={"observed_generation": None})]})))
    assert full.last_request is not None
    cases.append(("lastRequest.reason", full.model_copy(
        update={"last_request": full.last_request.model_copy(update={"reason": None})})))
    assert full.gate is not None
    cases.append(("gate.checkedAt", full.model_copy(
        update={"gate": full.gate.model_copy(update={"checked_at": None})})))
    return cases


def test_every_status_field_set_cleared_and_read_back_is_gone(cluster: Cluster) -> None:
    """The operator's own write path (reconciler.write_status) against the API server, no operator
    running: what is stored after each write equals what was written, cleared fields included."""
    from featurerollout.edges.kube import Kube, load_config
    from featurerollout.process.reconciler import write_status

    make_rollout(cluster, "roundtrip", stages=LONG_STAGES)
    full = full_status()

    def stored() -> dict[str, Any]:
        return dict(rollout(cluster, "roundtrip").get("status") or {})

    async def main() -> None:
        load_config(str(cluster.kubeconfig))
        kube = Kube()
        try:
            assert await write_status(kube, rollout(cluster, "roundtrip"), full)
            assert api.FeatureRolloutStatus.model_validate(stored()) == full
            for what, cleared in clearings(full):
                assert await write_status(kube, rollout(cluster, "roundtrip"), cleared), what
                raw = stored()
                assert api.FeatureRolloutStatus.model_validate(raw) == cleared, what
                assert raw == cleared.to_wire(), what  # nothing left behind, nothing added
                top, _, nested = what.partition(".")
                if not nested and top not in cleared.to_wire():
                    assert top not in raw, what
                # ... and set again: the next clearing starts from the full status
                assert await write_status(kube, rollout(cluster, "roundtrip"), full), what
                assert api.FeatureRolloutStatus.model_validate(stored()) == full, what
            # writing what is stored writes nothing
            assert not await write_status(kube, rollout(cluster, "roundtrip"), full)
        finally:
            kube.close()

    asyncio.run(main())


def test_a_stale_status_write_is_refused_by_the_resource_version_guard(cluster: Cluster) -> None:
    from featurerollout.edges.kube import CONFLICT, Kube, load_config, status_code
    from featurerollout.process.reconciler import write_status

    make_rollout(cluster, "guarded", stages=LONG_STAGES)
    read = rollout(cluster, "guarded")
    cluster.custom.patch_namespaced_custom_object(  # someone changes the object after our read
        GROUP, VERSION, "default", PLURAL, "guarded", {"metadata": {"labels": {"touched": "yes"}}})

    async def main() -> int | None:
        load_config(str(cluster.kubeconfig))
        kube = Kube()
        try:
            await write_status(kube, read, full_status())
        except Exception as error:
            return status_code(error)
        finally:
            kube.close()
        return None

    assert asyncio.run(main()) == CONFLICT
    assert "status" not in rollout(cluster, "guarded") or not rollout(cluster, "guarded")["status"].get("halt")


# --- terminal and halted states x resume / promote / retry ---------------------------------------

# state -> action -> (exit code, phase after, weight after). Exit codes: 0 done, 3 refused, 4 ignored.
# (approve: nothing to approve in any of them. The phase Waiting has its own table in
# tests/process/gates/test_gates_process.py, with every request.)
TABLE: dict[str, dict[str, tuple[int, str, float]]] = {
    "Aborted": {"resume": (4, "RolledBack", 0), "promote": (4, "RolledBack", 0), "retry": (0, "Progressing", 10),
                "approve": (4, "RolledBack", 0)},
    "Succeeded": {"resume": (4, "Succeeded", 100), "promote": (4, "Succeeded", 100),
                  "retry": (4, "Succeeded", 100), "approve": (4, "Succeeded", 100)},
    "Paused": {"resume": (0, "Progressing", 10), "promote": (0, "Progressing", 50), "retry": (4, "Paused", 10),
               "approve": (4, "Paused", 10)},
}


def drive_to(cluster: Cluster, state: str, name: str) -> None:
    if state == "Succeeded":
        make_rollout(cluster, name, stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}])
        wait_phase(cluster, name, "Succeeded")
        return
    make_rollout(cluster, name, stages=LONG_STAGES)
    wait_until(lambda: status(cluster, name).get("currentWeight") == 10, 30, f"{name} at 10%")
    action = {"Aborted": "abort", "Paused": "pause"}[state]
    result = cli(cluster, action, name)
    assert result.returncode == 0, result.stderr
    if state == "Aborted":  # the command waits for the 0% (manual.ROLLBACK_GRACE): it is there
        assert cm_weight(cluster, name) == 0 and status(cluster, name)["currentWeight"] == 0


@pytest.mark.parametrize("state", sorted(TABLE))
def test_terminal_and_paused_states_then_resume_promote_retry(
    cluster: Cluster, operator: OperatorFactory, state: str
) -> None:
    make_configmap(cluster)
    operator()
    names = {action: f"{state.lower()}-{action}" for action in TABLE[state]}
    for name in names.values():
        drive_to(cluster, state, name)
    for name in names.values():
        assert_tells_the_truth(cluster, name)
    for action, name in names.items():
        code, phase, weight = TABLE[state][action]
        result = cli(cluster, action, name)
        assert result.returncode == code, (action, result.stdout, result.stderr)
        if code == 4:
            assert f"{action} ignored: " in result.stderr
        settled = wait_until(lambda name=name, phase=phase, weight=weight: (  # type: ignore[misc]
            (s := status(cluster, name)).get("phase") == phase and s.get("currentWeight") == weight
            and cm_weight(cluster, name) == weight and s), 30, f"{name} {phase} at {weight}% after {action}")
        expected = {0: "Done", 3: "Refused", 4: "Ignored"}[code]
        assert settled["lastRequest"]["outcome"] == expected
        # It stays so: nothing from the old state comes back at the next looks (a halt left in the
        # stored status once paused a retried rollout again).
        time.sleep(2.5)
        again = assert_tells_the_truth(cluster, name)
        assert (again["phase"], again["currentWeight"]) == (phase, weight), again


# --- spec.paused is a pause, not a change of plan ------------------------------------------------


def test_toggling_spec_paused_keeps_the_stage_clock_and_says_paused_and_resumed(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(cluster, "gitops-pause", stages=[{"weight": 10, "duration": "8s"}, {"weight": 100}])
    started = wait_until(lambda: status(cluster, "gitops-pause").get("stageStartedAt"), 30, "the first stage")

    def set_paused(value: bool) -> None:
        cluster.custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "gitops-pause", {"spec": {"paused": value}})

    set_paused(True)
    wait_phase(cluster, "gitops-pause", "Paused", timeout=15)
    set_paused(False)
    wait_phase(cluster, "gitops-pause", "Progressing", timeout=15)
    st = status(cluster, "gitops-pause")
    assert st["stageStartedAt"] == started, "a spec.paused toggle restarted the stage clock"
    assert st["observedGeneration"] == 3
    reasons = [e.reason for e in events_of(cluster, "gitops-pause")]
    assert "SpecChanged" not in reasons
    assert reasons.count("Paused") == 1 and reasons.count("Resumed") == 1, reasons
    # The stage ends 8 s after it began, not 8 s after the unpause.
    wait_phase(cluster, "gitops-pause", "Succeeded", timeout=30)
    began = datetime.fromisoformat(started.replace("Z", "+00:00"))
    finished = datetime.fromisoformat(status(cluster, "gitops-pause")["finishedAt"].replace("Z", "+00:00"))
    assert began + timedelta(seconds=8) <= finished


# --- requests that cannot be carried out ---------------------------------------------------------


def test_abort_while_the_configmap_is_missing_stands_and_reaches_0_once_it_is_back(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """An abort is never refused for want of a target: like a rollback, it stands (one outcome,
    Done), the status says users may still be exposed until the target takes 0%, and the 0% is
    retried until it does. The exposure never comes back by itself."""
    make_configmap(cluster)
    operator("--resync", "1")
    make_rollout(cluster, "orphan", stages=LONG_STAGES)
    wait_until(lambda: status(cluster, "orphan").get("currentWeight") == 10, 30, "the first stage")
    cluster.core.delete_namespaced_config_map("feature-flags", "default")

    result = cli(cluster, "abort", "orphan")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "users may still be exposed at 10% until it does" in result.stdout
    handled = status(cluster, "orphan")["lastRequest"]
    assert handled["outcome"] == "Done"

    # The ConfigMap comes back (empty, then with the old entry at 10%): the abort's 0% lands.
    make_configmap(cluster, doc="")
    wait_until(lambda: cm_weight(cluster, "orphan") == 0, 90, "the abort's 0% written")
    wait_until(lambda: status(cluster, "orphan").get("currentWeight") == 0, 30, "the status at 0%")
    time.sleep(2)
    st = assert_tells_the_truth(cluster, "orphan")
    assert st["phase"] == "RolledBack"
    reasons = [e.reason for e in events_of(cluster, "orphan")]
    assert "RequestRefused" not in reasons and "TargetDrift" not in reasons, reasons
    assert reasons.count("Aborted") == 1, reasons


def test_retry_of_a_failed_rollout_is_carried_out_once_and_never_fires_later(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """A rollout an older operator left Failed (it could not drive webhook targets: the status is
    written here as that version wrote it). A `retry` gets exactly one recorded outcome, the CLI
    says so, and a later unrelated spec change does not carry the request out again."""
    make_configmap(cluster)
    make_rollout(cluster, "left-failed", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}])
    cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "left-failed", {
        "status": {"phase": "Failed", "currentWeight": 0, "observedGeneration": 1,
                   "message": "spec.target.webhook is not supported by this version of the operator yet",
                   "halt": {"reason": "UnsupportedTarget", "message": "not supported yet",
                            "at": "2026-01-01T00:00:00Z"}}})
    operator()
    result = cli(cluster, "retry", "left-failed")
    assert result.returncode == 0, (result.stdout, result.stderr)
    wait_until(lambda: status(cluster, "left-failed").get("phase") == "Progressing", 30, "the retry carried out")
    assert (status(cluster, "left-failed").get("lastRequest") or {}).get("outcome") == "Done"
    wait_until(lambda: cm_weight(cluster, "left-failed") == 10, 20, "10% written")
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "left-failed", {"spec": {"stages": [{"weight": 50}, {"weight": 100}]}})
    wait_until(lambda: status(cluster, "left-failed").get("observedGeneration") == 2, 20, "the spec change seen")
    time.sleep(1.5)
    reasons = [e.reason for e in events_of(cluster, "left-failed")]
    assert reasons.count("Retried") == 1, reasons
    assert_tells_the_truth(cluster, "left-failed")
