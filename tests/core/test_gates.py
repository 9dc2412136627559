"""Gates in the engine, pure: which gate holds, what the stage clock does, webhook answers, approvals,
timeouts, and that a gate never stands in the way of analysis or rollback (issue 12, Gates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from featurerollout.api import ControlAction, FeatureRolloutSpec, FeatureRolloutStatus, Phase
from featurerollout.core import gates
from featurerollout.core.engine import ControlRequest, Decision, decide, next_check
from featurerollout.core.measurement import Measurement
from tests.core.builders import RAMP, T0, bad, events, ok, reasons, req, seconds, weights


def gated_spec(*gate_list: Mapping[str, Any], stages: Sequence[tuple[float, str | None]] = RAMP,
               analysis: bool = False, interval: str = "10s") -> FeatureRolloutSpec:
    body: dict[str, Any] = {
        "flag": "new-checkout",
        "target": {"configMap": {"name": "feature-flags"}},
        "stages": [{"weight": w, **({"duration": d} if d else {})} for w, d in stages],
        "gates": [dict(g) for g in gate_list],
    }
    if analysis:
        body["analysis"] = {"interval": interval, "prometheus": {"address": "http://prometheus:9090"},
                            "metrics": [{"name": "error-rate", "query": "q", "max": 0.01}]}
    return FeatureRolloutSpec.model_validate(body)


SMOKE = {"name": "smoke", "before": "Start", "webhook": {"url": "http://checks.example/smoke"}}
OK_50 = {"name": "ok-50", "before": "Stage", "stage": 3, "approval": {}}


@dataclass
class Driver:
    """decide() driven as the reconciler drives it: the status written back, webhook gates asked
    when gates.webhook_due() says so (answered by `answer`), the test's clock."""

    spec: FeatureRolloutSpec
    answer: bool = False
    now: datetime = T0
    status: FeatureRolloutStatus = field(default_factory=FeatureRolloutStatus)
    applied: list[float] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def tick(self, after: float = 0, measurements: Mapping[str, Measurement] | None = None,
             request: ControlRequest | None = None) -> Decision:
        self.now += seconds(after)
        checks = None
        due = gates.webhook_due(self.spec, self.status, self.now)
        if due is not None:
            self.asked.append(due.name)
            answer = "answered 200 OK" if self.answer else "answered 500 Internal Server Error: broken"
            checks = {due.name: gates.GateCheck(due.name, self.answer, f"POST {due.webhook.url if due.webhook else ''} "
                                                                           f"{answer}")}
        decision = decide(self.spec, self.status, generation=1, now=self.now, measurements=measurements,
                          request=request, gate_checks=checks)
        self.status = decision.status
        self.applied.extend(weights(decision))
        return decision


# --- before the first exposure ---------------------------------------------------------------------


def test_a_closed_start_gate_exposes_nothing_and_says_why() -> None:
    run = Driver(gated_spec(SMOKE))
    first = run.tick()
    assert run.status.phase == Phase.WAITING
    assert weights(first) == [] and run.status.current_weight == 0 and run.status.started_at is None
    assert reasons(first) == ["WaitingForGate"]
    assert run.status.gate is not None and run.status.gate.name == "smoke" and run.status.gate.since == T0
    assert next_check(run.spec, run.status, run.now) == run.now  # ask it at once
    second = run.tick()
    assert run.asked == ["smoke"] and weights(second) == [] and reasons(second) == []
    assert run.status.phase == Phase.WAITING
    assert "answered 500 Internal Server Error" in (run.status.gate.message or "")
    assert "answered 500" in (run.status.message or "") and "nothing exposed" in (run.status.message or "")
    # asked again at the retry interval (10 s without analysis), not before
    assert next_check(run.spec, run.status, run.now) == run.now + seconds(10)
    run.tick(5)
    assert run.asked == ["smoke"]
    run.tick(5)
    assert run.asked == ["smoke", "smoke"] and run.applied == []
    assert run.status.gate.since == T0  # the wait counts from when it began


def test_an_open_start_gate_starts_the_rollout() -> None:
    run = Driver(gated_spec(SMOKE))
    run.tick()
    run.answer = True
    decision = run.tick(1)
    assert weights(decision) == [10] and run.status.phase == Phase.PROGRESSING
    assert reasons(decision) == ["GateOpened", "Started"]
    assert run.status.gate is None
    assert [(o.name, o.before) for o in run.status.opened_gates] == [("smoke", "Start")]
    # it is not asked again once open
    run.tick(30)
    assert run.asked == ["smoke"]


def test_the_webhook_is_asked_at_the_analysis_interval() -> None:
    run = Driver(gated_spec(SMOKE, analysis=True, interval="3s"))
    run.tick()
    run.tick()
    assert next_check(run.spec, run.status, run.now) == run.now + seconds(3)
    assert "asking again every 3s" in (run.status.gate.message or "")


# --- before a stage: the stage clock ---------------------------------------------------------------


def reach_stage_2(run: Driver) -> None:
    run.tick()
    run.tick(60)
    assert run.status.current_weight == 25


def test_an_approval_gate_holds_at_stage_2_until_approved() -> None:
    run = Driver(gated_spec(OK_50))
    reach_stage_2(run)
    stage_began = run.status.stage_started_at
    waiting = run.tick(60)
    assert run.status.phase == Phase.WAITING and weights(waiting) == [] and reasons(waiting) == ["WaitingForApproval"]
    assert run.status.stage == "2/4" and run.status.gate.before == "Stage 3"
    assert "approval gate 'ok-50' before stage 3" in (run.status.message or "")
    assert next_check(run.spec, run.status, run.now) is None  # only an approval opens it
    quiet = run.tick(600)
    assert weights(quiet) == [] and events(quiet) == [] and run.status.stage_started_at == stage_began
    approved = run.tick(1, request=req("approve"))
    assert weights(approved) == [50] and reasons(approved) == ["Approved", "StageAdvanced"]
    assert run.status.last_request is not None and run.status.last_request.outcome.value == "Done"
    record = next(o for o in run.status.opened_gates if o.name == "ok-50")
    assert record.request_id == "approve-1" and record.before == "Stage 3" and record.at == run.now
    assert run.status.phase == Phase.PROGRESSING and run.status.gate is None


def test_an_approval_during_the_hold_lets_the_stage_advance_when_the_hold_ends() -> None:
    """The stage clock keeps counting: the stage advances once both the hold passed and the gate opened."""
    run = Driver(gated_spec(OK_50))
    reach_stage_2(run)
    began = run.status.stage_started_at
    assert began is not None
    early = run.tick(10, request=req("approve"))
    assert reasons(early) == ["Approved"] and weights(early) == [] and run.status.phase == Phase.PROGRESSING
    advanced = run.tick(50)
    assert run.now == began + seconds(60)
    assert weights(advanced) == [50] and "WaitingForApproval" not in reasons(advanced)


def test_a_long_wait_does_not_restart_the_stage_clock_and_the_next_stage_holds_in_full() -> None:
    run = Driver(gated_spec(OK_50))
    reach_stage_2(run)
    run.tick(60)
    run.tick(3600, request=req("approve"))
    assert run.status.current_weight == 50 and run.status.stage_started_at == run.now
    run.tick(59)
    assert run.status.current_weight == 50
    run.tick(1)
    assert run.status.current_weight == 100


def test_approve_with_nothing_to_approve_is_ignored_with_a_reason() -> None:
    run = Driver(gated_spec(OK_50))
    run.tick()
    decision = run.tick(1, request=req("approve"))  # at stage 1: the next point is stage 2, unguarded
    assert run.status.last_request is not None and run.status.last_request.outcome.value == "Ignored"
    assert "no approval gate is waiting" in (run.status.last_request.reason or "")
    assert "before stage 2" in (run.status.last_request.reason or "")
    assert reasons(decision) == ["RequestIgnored"]
    ungated = Driver(gated_spec())
    ungated.tick()
    ungated.tick(1, request=req("approve"))
    assert "has no approval gates" in (ungated.status.last_request.reason or "")


def test_the_same_approval_twice_opens_no_second_gate() -> None:
    run = Driver(gated_spec({"name": "each", "before": "EveryStage", "approval": {}}))
    run.tick()
    run.tick(1, request=req("approve", "a1"))
    again = run.tick(1, request=req("approve", "a1"))  # the same request seen again: already handled
    assert events(again) == []
    second = run.tick(1, request=req("approve", "a2"))
    assert run.status.last_request.outcome.value == "Ignored" and reasons(second) == ["RequestIgnored"]


def test_every_stage_gates_each_stage_after_the_first_and_each_approval_opens_one() -> None:
    run = Driver(gated_spec({"name": "each", "before": "EveryStage", "approval": {}}))
    assert weights(run.tick()) == [10]  # EveryStage does not guard the first exposure
    for n, (weight, nxt) in enumerate(((10, 25), (25, 50), (50, 100)), start=2):
        waiting = run.tick(60)
        assert run.status.phase == Phase.WAITING and run.status.current_weight == weight
        assert run.status.gate.before == f"Stage {n}" and reasons(waiting) == ["WaitingForApproval"]
        assert weights(run.tick(1, request=req("approve", f"a{n}"))) == [nxt]
    run.tick(60)
    assert run.status.phase == Phase.SUCCEEDED


def test_a_success_gate_holds_at_100_until_it_opens() -> None:
    run = Driver(gated_spec({"name": "done", "before": "Success", "webhook": {"url": "http://c.example/done"}},
                            stages=((50, "1m"), (100, "1m"))))
    run.tick()
    run.tick(60)
    assert run.status.current_weight == 100
    run.tick(60)
    run.tick()
    assert run.status.phase == Phase.WAITING and run.status.gate.before == "Success"
    run.answer = True
    decision = run.tick(10)
    assert run.status.phase == Phase.SUCCEEDED and reasons(decision) == ["GateOpened", "Succeeded"]


def test_gates_at_one_point_open_in_order() -> None:
    run = Driver(gated_spec(SMOKE, {"name": "go", "before": "Start", "approval": {}}))
    run.tick()
    assert run.status.gate.name == "smoke"
    run.answer = True
    opened = run.tick()
    assert reasons(opened) == ["GateOpened", "WaitingForApproval"] and run.status.gate.name == "go"
    assert run.applied == []
    assert weights(run.tick(1, request=req("approve"))) == [10]


# --- a gate never stands in the way of analysis or rollback ----------------------------------------


def test_a_breach_while_waiting_rolls_back() -> None:
    run = Driver(gated_spec(OK_50, analysis=True))
    run.tick()
    run.tick(10, ok())
    run.tick(50)
    run.tick(10, ok())  # stage 2 at 25%, healthy
    run.tick(50, ok())
    assert run.status.phase == Phase.WAITING and run.status.current_weight == 25
    decision = run.tick(10, bad())
    assert run.status.phase == Phase.ROLLED_BACK and weights(decision) == [0]
    assert "RolledBack" in reasons(decision) and run.status.gate is None


def test_analysis_goes_on_while_waiting() -> None:
    from featurerollout.core.engine import analysis_due
    run = Driver(gated_spec(OK_50, analysis=True))
    run.tick()
    run.tick(10, ok())
    run.tick(50)
    run.tick(10, ok())
    run.tick(50, ok())
    assert run.status.phase == Phase.WAITING
    run.now += seconds(10)
    assert analysis_due(run.spec, run.status, run.now)
    check = next_check(run.spec, run.status, run.now - seconds(10))
    assert check == run.now


def test_a_start_gate_timeout_with_rollback_rolls_back_with_gate_timed_out() -> None:
    run = Driver(gated_spec({**SMOKE, "timeout": "30s", "onTimeout": "Rollback"}))
    run.tick()
    assert next_check(run.spec, run.status, run.now) == run.now
    run.tick()
    run.tick(10)
    run.tick(10)
    assert run.status.phase == Phase.WAITING
    decision = run.tick(10)
    assert run.status.phase == Phase.ROLLED_BACK and run.status.halt is not None
    assert run.status.halt.reason == "GateTimedOut" and weights(decision) == [0]
    assert "RolledBack" in reasons(decision)


def test_a_timeout_with_hold_says_so_once_and_keeps_holding() -> None:
    run = Driver(gated_spec({**OK_50, "timeout": "1m"}))
    reach_stage_2(run)
    run.tick(60)
    assert next_check(run.spec, run.status, run.now) == run.now + seconds(60)
    late = run.tick(60)
    assert reasons(late) == ["GateTimedOut"] and run.status.phase == Phase.WAITING
    assert run.status.gate.timed_out and "past its timeout" in (run.status.message or "")
    assert events(run.tick(60)) == [] and run.status.current_weight == 25
    assert next_check(run.spec, run.status, run.now) is None


# --- every request from Waiting ---------------------------------------------------------------------


def waiting_at_stage_2() -> Driver:
    run = Driver(gated_spec(OK_50))
    reach_stage_2(run)
    run.tick(60)
    assert run.status.phase == Phase.WAITING
    return run


@pytest.mark.parametrize(
    ("action", "outcome", "phase", "weight"),
    [
        ("approve", "Done", Phase.PROGRESSING, 50),
        ("promote", "Done", Phase.PROGRESSING, 50),
        ("pause", "Done", Phase.PAUSED, 25),
        ("resume", "Ignored", Phase.WAITING, 25),
        ("abort", "Done", Phase.ROLLED_BACK, 0),
        ("retry", "Ignored", Phase.WAITING, 25),
    ],
)
def test_every_request_from_waiting(action: str, outcome: str, phase: Phase, weight: float) -> None:
    assert {a.value for a in ControlAction} == {"approve", "promote", "pause", "resume", "abort", "retry"}
    run = waiting_at_stage_2()
    run.tick(1, request=req(action))
    assert run.status.last_request is not None and run.status.last_request.outcome.value == outcome
    assert (run.status.phase, run.status.current_weight) == (phase, weight)
    assert (run.status.gate is not None) == (phase == Phase.WAITING)
    again = run.tick(1)  # and nothing churns at the next look
    assert (run.status.phase, run.status.current_weight) == (phase, weight)
    assert weights(again) == [] and events(again) == []


@pytest.mark.parametrize(
    ("action", "outcome", "phase", "weight"),
    [
        ("approve", "Ignored", Phase.WAITING, 0),  # a webhook gate: nothing to approve
        ("promote", "Done", Phase.PROGRESSING, 10),
        ("pause", "Done", Phase.PAUSED, 0),
        ("resume", "Ignored", Phase.WAITING, 0),
        ("abort", "Done", Phase.ROLLED_BACK, 0),
        ("retry", "Ignored", Phase.WAITING, 0),
    ],
)
def test_every_request_from_waiting_before_the_start(action: str, outcome: str, phase: Phase,
                                                     weight: float) -> None:
    run = Driver(gated_spec(SMOKE))
    run.tick()
    run.tick()
    run.tick(1, request=req(action))
    assert run.status.last_request is not None and run.status.last_request.outcome.value == outcome
    assert (run.status.phase, run.status.current_weight) == (phase, weight)


def test_a_pause_while_waiting_ends_the_wait_and_a_resume_starts_it_afresh() -> None:
    run = waiting_at_stage_2()
    run.tick(5, request=req("pause"))
    assert run.status.gate is None
    decision = run.tick(100, request=req("resume", "r1"))
    assert run.status.phase == Phase.WAITING and run.status.gate.since == run.now
    assert "WaitingForApproval" in reasons(decision)


def test_retry_forgets_the_gates_that_opened() -> None:
    run = Driver(gated_spec(SMOKE))
    run.answer = True
    run.tick()
    run.tick()
    assert run.status.opened_gates
    run.tick(1, request=req("abort"))
    run.answer = False
    retried = run.tick(1, request=req("retry"))
    # starting again, it waits at the start gate afresh: the old opening does not count
    assert run.status.opened_gates == [] and run.status.gate is not None and run.status.gate.since == run.now
    assert run.status.phase == Phase.WAITING and run.status.current_weight == 0 and weights(retried) == []


def test_a_waiting_rollout_decided_again_writes_nothing() -> None:
    run = waiting_at_stage_2()
    before = run.status
    decision = decide(run.spec, before, generation=1, now=run.now + seconds(5))
    assert decision.status == before and decision.actions == ()


def test_gates_pure_helpers() -> None:
    spec = gated_spec(SMOKE, OK_50, {"name": "each", "before": "EveryStage", "approval": {}},
                      {"name": "done", "before": "Success", "approval": {}})
    assert [g.name for g in gates.gates_at(spec, "Start")] == ["smoke"]
    assert [g.name for g in gates.gates_at(spec, "Stage 2")] == ["each"]
    assert [g.name for g in gates.gates_at(spec, "Stage 3")] == ["ok-50", "each"]
    assert [g.name for g in gates.gates_at(spec, "Success")] == ["done"]
    assert gates.point_words("Stage 3") == "before stage 3"


def test_simulate_takes_gates_as_open() -> None:
    import asyncio

    from featurerollout.commands.simulate import replay

    async def nothing_measured(status: object, at: object) -> dict[str, object]:
        return {}

    spec = gated_spec(SMOKE, OK_50, stages=((10, "1m"), (50, "1m"), (100, None)))
    result = asyncio.run(replay(spec, nothing_measured, start=T0, end=T0 + seconds(600)))
    assert result.phase == Phase.SUCCEEDED


def test_waiting_before_the_start_after_a_retry_never_writes_the_target() -> None:
    """A retried rollout whose start gate is closed has no exposure of its own: someone else's
    change to the flag meanwhile is not 'drift' to put back."""
    from featurerollout.core.engine import Observed

    run = Driver(gated_spec(SMOKE))
    run.answer = True
    run.tick()
    run.tick()
    run.tick(1, request=req("abort"))
    run.answer = False
    run.tick(1, request=req("retry"))
    assert run.status.phase == Phase.WAITING and run.status.target is not None
    decision = decide(run.spec, run.status, generation=1, now=run.now + seconds(1), observed=Observed(30.0))
    assert weights(decision) == [] and "TargetDrift" not in reasons(decision)
    assert decision.status.current_weight == 30  # it says what the flag exposes, and leaves it
