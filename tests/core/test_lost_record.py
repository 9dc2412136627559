"""A look whose target write landed but whose status write was lost (the process was killed, or
lost its Lease, between the two: docs/high-availability.md). The next look, by whoever leads
then, must record that step once, not take the old weight back and the step again."""

from __future__ import annotations

from featurerollout.core.engine import Observed, decide
from tests.core.builders import Rollout, make_spec, reasons, req, seconds, weights


def started() -> Rollout:
    r = Rollout(make_spec())
    r.tick()  # 10%
    assert r.status.current_weight == 10
    return r


def test_the_next_stage_already_on_the_target_is_recorded_once() -> None:
    r = started()
    # The stage is over; the killed leader wrote 25% and died before its status write.
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(61), observed=Observed(25))
    assert decision.status.current_stage == 1
    assert decision.status.current_weight == 25
    assert reasons(decision) == ["StageAdvanced"]
    assert weights(decision) == [25]  # the same weight again: nothing new for users


def test_the_last_step_already_on_the_target_is_recorded_once() -> None:
    r = started()
    for _ in range(2):
        r.tick(61)
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(61), observed=Observed(100))
    assert reasons(decision) == ["StageAdvanced", "Succeeded"]  # 100% has no hold: it succeeds at once
    assert decision.status.current_weight == 100


def test_an_abort_already_on_the_target_is_recorded_once() -> None:
    r = started()
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(5), observed=Observed(0),
                      request=req("abort"))
    assert weights(decision) == [0]
    assert "TargetDrift" not in reasons(decision)
    assert decision.status.current_weight == 0


def test_the_next_weight_before_the_stage_is_over_is_still_drift() -> None:
    """Someone else's edit that happens to equal the next stage: the stage is not over, so it is
    drift and put back (the rule above must not hide real drift)."""
    r = started()
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(30), observed=Observed(25))
    assert weights(decision) == [10]
    assert "TargetDrift" in reasons(decision)


def test_another_weight_after_the_stage_is_still_drift() -> None:
    r = started()
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(61), observed=Observed(40))
    assert "TargetDrift" in reasons(decision)
