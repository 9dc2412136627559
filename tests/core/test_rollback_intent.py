"""A rollback is put on record before its 0% is written (engine.rollback_intent), so that a process
killed (or out of its Lease) between the target write and the status write leaves a pending
rollback that its successor completes: never a Progressing status beside a 0% target, which reads
as drift and, once the metric looks healthy again, would expose users again."""

from __future__ import annotations

from featurerollout.api import Phase
from featurerollout.core.engine import Decision, Observed, decide, rollback_intent
from tests.core.builders import Rollout, bad, make_spec, ok, reasons, req, seconds, weights


def breach(r: Rollout, after: float = 10) -> Decision:
    return decide(r.spec, r.status, generation=1, now=r.now + seconds(after), measurements=bad(), observed=Observed(10))


def exposed_at_10() -> Rollout:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    assert r.status.current_weight == 10 and r.status.phase == Phase.PROGRESSING
    return r


def test_a_breach_is_recorded_as_a_pending_rollback_before_the_target_write() -> None:
    r = exposed_at_10()
    decision = breach(r)
    assert weights(decision) == [0]
    intent = rollback_intent(r.status, decision)
    assert intent is not None
    assert intent.phase == Phase.ROLLED_BACK and intent.current_weight == 10
    assert intent.halt is not None and intent.halt.reason == decision.status.halt.reason  # type: ignore[union-attr]
    assert "not taken 0% yet" in (intent.message or "")


def test_killed_after_the_0_percent_write_the_successor_completes_the_rollback_even_if_healthy_now() -> None:
    r = exposed_at_10()
    now = r.now + seconds(10)
    decision = breach(r)
    intent = rollback_intent(r.status, decision)
    assert intent is not None
    # The target took 0%, the process died before the final status write; the metric recovered.
    later = decide(r.spec, intent, generation=1, now=now + seconds(10), measurements=ok(), observed=Observed(0))
    assert later.status.phase == Phase.ROLLED_BACK and later.status.current_weight == 0
    assert all(w == 0 for w in weights(later))  # never 10% again
    assert "TargetDrift" not in reasons(later)
    assert reasons(later).count("RolledBack") == 1


def test_killed_before_the_0_percent_write_the_successor_writes_it() -> None:
    r = exposed_at_10()
    now = r.now + seconds(10)
    decision = breach(r)
    intent = rollback_intent(r.status, decision)
    assert intent is not None
    later = decide(r.spec, intent, generation=1, now=now + seconds(1), observed=Observed(10))
    assert weights(later) == [0]
    assert later.status.current_weight == 0 and later.status.phase == Phase.ROLLED_BACK


def test_an_abort_is_recorded_first_too() -> None:
    r = exposed_at_10()
    decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(5), request=req("abort"),
                      observed=Observed(10))
    intent = rollback_intent(r.status, decision)
    assert intent is not None and intent.current_weight == 10 and intent.phase == Phase.ROLLED_BACK


def test_nothing_is_recorded_first_for_a_step_up_or_a_finished_rollback() -> None:
    r = exposed_at_10()
    step = decide(r.spec, r.status, generation=1, now=r.now + seconds(61), measurements=ok(), observed=Observed(10))
    assert weights(step) == [25] and rollback_intent(r.status, step) is None
    decision = breach(r)
    done = decision.status
    after = decide(r.spec, done, generation=1, now=r.now + seconds(20), observed=Observed(0))
    assert rollback_intent(done, after) is None
