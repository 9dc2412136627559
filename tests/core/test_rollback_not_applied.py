"""A rollback whose 0% the target refuses still stands, and is retried until the target takes it.

Issue "Step real traffic ...": a webhook that is down during a rollback must not leave users
exposed by the rollback being forgotten; the status says they may still be exposed until then.
"""

from __future__ import annotations

from featurerollout.api import Phase
from featurerollout.core.engine import TARGET_REASONS, Observed, WriteOutcome, decide, settle
from featurerollout.edges.targets import httproute, webhook
from tests.core.builders import Rollout, bad, events, make_spec, ok, reasons, req, seconds, weights

DOWN = "webhook PUT http://flags: could not connect: connection refused (3 attempts); not applied"


def rolled_back_while_the_target_is_down() -> tuple[Rollout, object]:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(10, ok())
    r.tick(60, ok())  # stage 2 at 25%
    given = r.status
    decision = decide(r.spec, given, generation=1, now=r.now + seconds(10), measurements=bad())
    assert weights(decision) == [0] and decision.status.phase == Phase.ROLLED_BACK
    r.now += seconds(10)
    failed = settle(r.spec, given, decision, WriteOutcome.failed("WebhookUnreachable", DOWN), generation=1,
                    now=r.now)
    r.status = failed.status
    return r, failed


def test_the_rollback_stands_but_the_status_says_users_may_still_be_exposed() -> None:
    r, failed = rolled_back_while_the_target_is_down()
    status = failed.status  # type: ignore[attr-defined]
    assert status.phase == Phase.ROLLED_BACK
    assert status.halt is not None and status.halt.reason == "BudgetExceeded"
    assert status.current_weight == 25  # what the target still holds
    assert "users may still be exposed at 25% until it does" in status.message
    assert DOWN in status.message
    degraded = status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "WebhookUnreachable")
    # Not "RolledBack ... rolled back to 0%" yet: that would claim what the target does not hold.
    assert reasons(failed) == ["WebhookUnreachable"]  # type: ignore[arg-type]
    assert failed.next_check == r.now + seconds(5)  # type: ignore[attr-defined]


def test_each_look_sends_0_again_even_when_the_metric_recovered() -> None:
    r, _ = rolled_back_while_the_target_is_down()
    again = r.tick(5, ok())  # the metric is fine now: the rollback is not forgotten
    assert weights(again) == [0]
    assert again.status.current_weight == 0
    assert again.status.phase == Phase.ROLLED_BACK
    assert again.status.message.startswith("rolled back: error-rate")
    assert "still be exposed" not in again.status.message
    assert [(e.type, e.reason) for e in events(again)] == [("Warning", "RolledBack")]
    degraded = again.status.condition("Degraded")
    assert degraded is not None and degraded.reason == "BudgetExceeded"
    assert again.next_check is None
    assert weights(r.tick(30)) == []  # taken: nothing more to send


def test_failing_retries_back_off_without_a_new_event() -> None:
    r, first = rolled_back_while_the_target_is_down()
    delays = []
    for after in (5, 10, 20, 40, 80, 160):
        r.now += seconds(after)
        decision = decide(r.spec, r.status, generation=1, now=r.now)
        assert weights(decision) == [0]
        failed = settle(r.spec, r.status, decision, WriteOutcome.failed("WebhookUnreachable", DOWN), generation=1,
                        now=r.now)
        assert events(failed) == []
        assert failed.status.message == first.status.message  # type: ignore[attr-defined]
        delays.append((failed.next_check - r.now).total_seconds())  # type: ignore[operator]
        r.status = failed.status
    assert delays == sorted(delays) and delays[0] >= 5 and delays[-1] == 60


def test_an_abort_the_target_refuses_is_handled_once_and_retried() -> None:
    r = Rollout(make_spec())
    r.tick()
    given = r.status
    decision = decide(r.spec, given, generation=1, now=r.now + seconds(1), request=req("abort", "a1"))
    failed = settle(r.spec, given, decision, WriteOutcome.failed("WebhookFailed", "answered 503"), generation=1,
                    now=r.now + seconds(1))
    assert failed.status.last_request is not None and failed.status.last_request.id == "a1"
    assert failed.status.current_weight == 10
    later = decide(r.spec, failed.status, generation=1, now=r.now + seconds(7), request=req("abort", "a1"))
    assert weights(later) == [0]
    assert reasons(later) == ["Aborted"]


def test_every_reason_a_target_raises_is_retried_by_the_engine() -> None:
    assert httproute.REASONS | webhook.REASONS <= TARGET_REASONS


def test_a_pending_rollback_never_puts_the_exposure_back_when_the_target_reads_differently() -> None:
    """The target, read back, holds less than the status's weight while the rollback's 0% is
    pending (its flag entry is gone, say): that is no drift to repair. Writing the old weight back
    would re-expose users that the rollback took away; the next write is 0%, and nothing else."""
    r, _ = rolled_back_while_the_target_is_down()
    for held in (None, 0.0, 10.0):
        decision = decide(r.spec, r.status, generation=1, now=r.now + seconds(5), observed=Observed(held))
        assert weights(decision) == [0], held
        assert "TargetDrift" not in reasons(decision)
