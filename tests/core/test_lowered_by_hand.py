"""Issue 19: the kill switch always wins. Drift that LOWERS the exposure (a lower weight, 0%,
DISABLED, the flag entry gone) is a person switching the feature off and is never written back up:
an active rollout pauses at what the target holds, a finished one is RolledBack there (nothing
written); drift that RAISES it is still put back down. Every manual request is tried from the new
states. Pure: decide() driven as the reconciler drives it, with what the target holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pytest

from featurerollout.api import LOWERED_BY_HAND, FeatureRolloutSpec, FeatureRolloutStatus, Phase, settled
from featurerollout.core.engine import ControlRequest, Decision, Observed, decide, rollback_intent
from tests.core.builders import RAMP, T0, make_spec, reasons, req, seconds, weights
from tests.core.test_gates import OK_50, gated_spec


@dataclass
class Target:
    """decide() with the target's weight read back at every look, and its SetWeights applied."""

    spec: FeatureRolloutSpec
    held: float | None = None
    now: datetime = T0
    status: FeatureRolloutStatus = field(default_factory=FeatureRolloutStatus)
    written: list[float] = field(default_factory=list)

    def look(self, after: float = 0, request: ControlRequest | None = None) -> Decision:
        self.now += seconds(after)
        decision = decide(self.spec, self.status, generation=1, now=self.now, request=request,
                          observed=Observed(self.held, "ConfigMap default/feature-flags key flags.flagd.json"))
        self.status = decision.status
        for weight in weights(decision):
            self.held = weight
            self.written.append(weight)
        return decision


def at_25() -> Target:
    t = Target(make_spec())
    t.look()
    t.look(61)
    assert (t.status.phase, t.status.current_weight, t.status.current_stage) == (Phase.PROGRESSING, 25, 1)
    return t


def succeeded() -> Target:
    t = Target(make_spec(stages=((50, "1s"), (100, None))))
    t.look()
    t.look(2)
    assert (t.status.phase, t.held) == (Phase.SUCCEEDED, 100)
    return t


def condition(status: FeatureRolloutStatus, type_: str) -> tuple[str, str, str]:
    found = status.condition(type_)
    assert found is not None, f"no {type_} condition"
    return str(found.status), found.reason, found.message


# --- an active rollout: paused where the person left it -----------------------------------------


@pytest.mark.parametrize(("held", "words"), [(0.0, "held 0%"), (None, "held no entry")])
def test_an_active_rollout_switched_off_by_hand_pauses_there_and_writes_nothing(held: float | None,
                                                                                 words: str) -> None:
    t = at_25()
    t.held = held  # set to 0%, DISABLED (read as 0%), or the entry removed
    d = t.look(5)
    assert weights(d) == []
    s = d.status
    assert (s.phase, s.current_weight, s.current_stage) == (Phase.PAUSED, 0, 0)
    assert s.halt is not None and s.halt.reason == LOWERED_BY_HAND
    assert reasons(d) == [LOWERED_BY_HAND] and d.actions[0].type == "Warning"  # type: ignore[union-attr]
    status_, reason, message = condition(s, "TargetInSync")
    assert (status_, reason) == ("False", LOWERED_BY_HAND)
    assert words in message and "less than the 25% this rollout set" in message
    assert "switched off by hand" in message and "featurerollout resume` to ramp again from 10%" in message
    assert "featurerollout abort` to end it at 0%" in message
    assert condition(s, "Degraded")[:2] == ("True", LOWERED_BY_HAND)
    # It stays off: many looks later, past every stage's hold, nothing is written, nothing repeated.
    for _ in range(10):
        later = t.look(120)
        assert weights(later) == [] and reasons(later) == []
    assert t.status.phase == Phase.PAUSED and t.written == [10, 25]


def test_a_partial_lowering_pauses_at_that_weight_in_the_stage_at_or_below_it() -> None:
    t = at_25()
    t.look(61)  # 50%, stage 3/4
    t.held = 30
    d = t.look(5)
    assert weights(d) == [] and (d.status.phase, d.status.current_weight, d.status.current_stage) == (
        Phase.PAUSED, 30, 1)
    assert "lowered by hand to 30%" in (d.status.message or "")
    resumed = t.look(1, request=req("resume"))
    assert weights(resumed) == []  # 30% is above stage 2's 25%: it goes on from 30%, never lower
    assert (t.status.phase, t.status.current_weight, t.status.stage_started_at) == (Phase.PROGRESSING, 30, t.now)
    assert weights(t.look(61)) == [50]  # the stage's hold counts from the resume


def test_a_rollout_waiting_at_a_gate_switched_off_by_hand_pauses_too() -> None:
    t = Target(gated_spec(OK_50))
    t.look()
    t.look(61)
    waiting = t.look(61)
    assert t.status.phase == Phase.WAITING and weights(waiting) == []
    t.held = 0
    d = t.look(5)
    assert weights(d) == [] and d.status.phase == Phase.PAUSED and d.status.gate is None
    assert d.status.halt is not None and d.status.halt.reason == LOWERED_BY_HAND


def test_a_spec_change_never_raises_a_weight_lowered_by_hand() -> None:
    t = at_25()
    t.held = 0
    t.look(5)
    t.spec = make_spec(stages=((20, "1m"), (100, None)))
    d = decide(t.spec, t.status, generation=2, now=t.now + seconds(1), observed=Observed(0))
    assert all(w == 0 for w in weights(d)) and d.status.current_weight == 0
    assert d.status.phase == Phase.PAUSED


def test_raised_by_hand_on_an_active_rollout_is_put_back_down() -> None:
    t = at_25()
    t.held = 80
    d = t.look(5)
    assert weights(d) == [25] and reasons(d) == ["TargetDrift"]
    assert condition(d.status, "TargetInSync")[:2] == ("True", "DriftRepaired")
    assert "held 80% for flag 'new-checkout', more than the 25% this rollout set" in d.actions[1].message  # type: ignore[union-attr]


# --- every request from the paused-by-hand state -------------------------------------------------


def paused_by_hand() -> Target:
    t = at_25()
    t.held = 0
    t.look(5)
    assert t.status.halt is not None and t.status.halt.reason == LOWERED_BY_HAND
    return t


def test_resume_after_a_switch_off_ramps_again_from_the_stage() -> None:
    t = paused_by_hand()
    d = t.look(1, request=req("resume"))
    assert weights(d) == [10] and reasons(d) == ["Resumed"]
    s = d.status
    assert (s.phase, s.current_weight, s.current_stage, s.halt) == (Phase.PROGRESSING, 10, 0, None)
    assert s.stage_started_at == t.now and s.last_request is not None and s.last_request.outcome.value == "Done"
    assert condition(s, "TargetInSync")[:2] == ("True", "TakenBack")
    assert condition(s, "Degraded")[:2] == ("False", "AsExpected")
    assert weights(t.look(61)) == [25]


def test_resume_while_spec_paused_raises_nothing() -> None:
    t = paused_by_hand()
    t.spec = make_spec(paused=True)
    d = decide(t.spec, t.status, generation=2, now=t.now + seconds(1), request=req("resume"), observed=Observed(0))
    assert weights(d) == [] and d.status.phase == Phase.PAUSED and d.status.current_weight == 0


def test_promote_after_a_switch_off_goes_to_the_next_stage() -> None:
    t = paused_by_hand()
    d = t.look(1, request=req("promote"))
    assert weights(d) == [25] and reasons(d) == ["Promoted"] and d.status.phase == Phase.PROGRESSING


def test_pause_after_a_switch_off_holds_and_writes_nothing() -> None:
    t = paused_by_hand()
    d = t.look(1, request=req("pause"))
    assert weights(d) == [] and d.status.phase == Phase.PAUSED and d.status.manual_pause
    # resume then releases both the pause and the switch-off
    assert weights(t.look(1, request=req("resume"))) == [10]


def test_abort_after_a_switch_off_ends_it_at_zero() -> None:
    t = paused_by_hand()
    d = t.look(1, request=req("abort"))
    assert weights(d) == [0] and reasons(d) == ["Aborted"]
    assert d.status.phase == Phase.ROLLED_BACK and d.status.halt.reason == "Aborted"  # type: ignore[union-attr]
    assert condition(d.status, "TargetInSync")[:2] == ("True", "TakenBack")


@pytest.mark.parametrize("action", ["retry", "approve"])
def test_retry_and_approve_after_a_switch_off_are_ignored(action: str) -> None:
    t = paused_by_hand()
    d = t.look(1, request=req(action))
    assert weights(d) == [] and reasons(d) == ["RequestIgnored"] and d.status.phase == Phase.PAUSED


# --- a finished rollout: accepted as switched off, nothing written --------------------------------


@pytest.mark.parametrize("held", [0.0, None])
def test_a_succeeded_rollout_switched_off_by_hand_is_accepted_and_never_put_back(held: float | None) -> None:
    t = succeeded()
    t.held = held
    d = t.look(300)
    assert weights(d) == [] and reasons(d) == [LOWERED_BY_HAND]
    s = d.status
    assert (s.phase, s.current_weight) == (Phase.ROLLED_BACK, 0)
    assert s.halt is not None and s.halt.reason == LOWERED_BY_HAND
    assert "switched off by hand" in (s.message or "") and "featurerollout retry" in (s.message or "")
    assert condition(s, "TargetInSync")[:2] == ("False", LOWERED_BY_HAND)
    assert condition(s, "Progressing")[:2] == ("False", LOWERED_BY_HAND)
    assert settled(s.to_wire())
    for _ in range(5):  # resync after resync
        later = t.look(300)
        assert weights(later) == [] and reasons(later) == []
    assert t.written == [50, 100]


def test_a_succeeded_rollout_lowered_by_hand_to_40_stays_at_40_and_is_no_pending_rollback() -> None:
    t = succeeded()
    t.held = 40
    d = t.look(300)
    assert weights(d) == [] and (d.status.phase, d.status.current_weight) == (Phase.ROLLED_BACK, 40)
    assert settled(d.status.to_wire())  # a watcher is done: no 0% is on its way
    for _ in range(3):
        assert weights(t.look(300)) == []
    # A person's abort then takes it to 0%, recorded before the write like any abort.
    abort = decide(t.spec, t.status, generation=1, now=t.now + seconds(1), request=req("abort"), observed=Observed(40))
    assert weights(abort) == [0]
    intent = rollback_intent(t.status, abort)
    assert intent is not None and intent.current_weight == 40 and not settled(intent.to_wire())


def switched_off_when_finished() -> Target:
    t = succeeded()
    t.held = 0
    t.look(300)
    assert t.status.phase == Phase.ROLLED_BACK
    return t


def test_retry_after_a_finished_switch_off_ramps_again_from_the_first_stage() -> None:
    t = switched_off_when_finished()
    d = t.look(1, request=req("retry"))
    assert weights(d) == [50] and reasons(d) == ["Retried", "Started"]
    assert (d.status.phase, d.status.halt) == (Phase.PROGRESSING, None)
    assert condition(d.status, "TargetInSync")[:2] == ("True", "TakenBack")


@pytest.mark.parametrize("action", ["abort", "resume", "promote", "pause", "approve"])
def test_other_requests_after_a_finished_switch_off_are_ignored(action: str) -> None:
    t = switched_off_when_finished()
    d = t.look(1, request=req(action))
    assert weights(d) == [] and reasons(d) == ["RequestIgnored"]
    assert d.status.phase == Phase.ROLLED_BACK and d.status.current_weight == 0


# --- abort on a finished rollout, then retry --------------------------------------------------------


def test_abort_on_a_succeeded_rollout_goes_to_zero_and_retry_ramps_again() -> None:
    t = succeeded()
    d = t.look(10, request=req("abort", "a"))
    assert weights(d) == [0] and reasons(d) == ["Aborted"]
    assert rollback_intent(FeatureRolloutStatus.model_validate(t.status.to_wire()), d) is None  # (already applied)
    assert (t.status.phase, t.status.current_weight, t.status.halt.reason) == (  # type: ignore[union-attr]
        Phase.ROLLED_BACK, 0, "Aborted")
    for _ in range(3):
        assert weights(t.look(300)) == []  # stays off
    retried = t.look(1, request=req("retry", "r"))
    assert weights(retried) == [50] and t.status.phase == Phase.PROGRESSING
    assert weights(t.look(2)) == [100] and t.status.phase == Phase.SUCCEEDED


def test_abort_on_a_succeeded_rollout_is_recorded_before_its_zero_write() -> None:
    t = succeeded()
    d = decide(t.spec, t.status, generation=1, now=t.now + seconds(5), request=req("abort"), observed=Observed(100))
    intent = rollback_intent(t.status, d)
    assert intent is not None and intent.phase == Phase.ROLLED_BACK and intent.current_weight == 100


@pytest.mark.parametrize("action", ["resume", "promote", "pause", "approve", "abort"])
def test_other_requests_after_an_abort_of_a_finished_rollout_are_ignored(action: str) -> None:
    t = succeeded()
    t.look(10, request=req("abort", "a"))
    d = t.look(1, request=req(action, "x"))
    assert weights(d) == [] and reasons(d) == ["RequestIgnored"] and t.status.phase == Phase.ROLLED_BACK


def test_an_abort_that_finds_the_flag_already_switched_off_is_carried_out_not_taken_for_drift() -> None:
    t = succeeded()
    t.held = 0  # the person switched it off by hand, and ran abort too
    d = t.look(1, request=req("abort"))
    assert reasons(d) == ["Aborted"] and d.status.halt.reason == "Aborted"  # type: ignore[union-attr]
    assert d.status.last_request is not None and d.status.last_request.outcome.value == "Done"


def test_a_ramp_that_is_never_lowered_is_unchanged() -> None:
    """The rule bites only on a lowering: a target that holds what was set is left to the plan."""
    t = Target(make_spec(stages=RAMP))
    for _ in range(4):
        t.look(61)
    assert t.written == [10, 25, 50, 100] and t.status.phase == Phase.SUCCEEDED


def test_a_configmap_recreated_empty_after_a_target_error_gets_no_entry_written() -> None:
    """Deleted (the read failed: Degraded TargetNotFound), then re-created empty: the look that finds
    no entry must not 'retry the failed write' either (that would put an entry back)."""
    from featurerollout.core.engine import WriteOutcome, settle

    for t in (at_25(), succeeded()):
        refused = WriteOutcome.failed("TargetNotFound", "ConfigMap default/feature-flags: the ConfigMap does not exist")
        failed = settle(t.spec, t.status, None, refused, generation=1, now=t.now + seconds(5))
        t.status = failed.status
        t.held = None
        d = t.look(10)
        assert weights(d) == [] and reasons(d) == [LOWERED_BY_HAND]
        assert condition(d.status, "Degraded")[:2] == ("True", LOWERED_BY_HAND)
        assert weights(t.look(10)) == []


def test_a_spec_change_in_the_same_look_as_the_switch_off_writes_nothing_higher() -> None:
    """The drift check comes before the spec change: otherwise the change re-writes the old weight
    over the person's 0%."""
    t = at_25()
    t.spec = make_spec(stages=((20, "1m"), (100, None)))
    d = decide(t.spec, t.status, generation=2, now=t.now + seconds(5), observed=Observed(0))
    assert all(w == 0 for w in weights(d)) and d.status.current_weight == 0
    assert d.status.phase == Phase.PAUSED and LOWERED_BY_HAND in reasons(d)


@pytest.mark.parametrize(("switched_off", "phase"), [("active", Phase.PAUSED), ("finished", Phase.ROLLED_BACK)])
def test_raised_by_hand_after_a_switch_off_is_put_back_down_to_what_the_person_left(
    switched_off: str, phase: Phase
) -> None:
    t = paused_by_hand() if switched_off == "active" else switched_off_when_finished()
    t.held = 100
    d = t.look(300)
    assert weights(d) == [0] and reasons(d) == ["TargetDrift"] and d.status.phase == phase
