"""One test per behaviour of the engine, named after it: pausing, manual requests, spec changes,
conditions and messages, target errors."""

from __future__ import annotations

from featurerollout.api import FeatureRolloutStatus, Phase
from featurerollout.core.engine import (
    ControlRequest,
    EmitEvent,
    SetWeight,
    WriteOutcome,
    analysis_due,
    cannot_proceed,
    decide,
    settle,
)
from tests.core.builders import (
    T0,
    Rollout,
    bad,
    cond,
    events,
    make_spec,
    ok,
    reasons,
    req,
    seconds,
    weights,
)

# --- pause -------------------------------------------------------------------------------------


def test_paused_holds_the_weight_while_the_stage_clock_runs() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    d = r.tick(10, request=req("pause"))
    assert d.status.phase == Phase.PAUSED and cond(d, "Progressing") == ("False", "Paused")
    assert d.status.message == "paused by `featurerollout pause` at 10% (stage 1/4): error-rate awaiting evaluation"
    d = r.tick(100, ok())
    assert weights(d) == [] and d.status.stage_started_at == T0
    assert analysis_due(r.spec, r.status, r.now + seconds(10))  # analysis continues while paused


def test_a_paused_rollout_still_rolls_back() -> None:
    r = Rollout(make_spec(analysis=True, paused=True))
    r.tick()
    r.spec, r.generation = make_spec(analysis=True), 2
    r.tick(1)  # started at 10%
    r.spec, r.generation = make_spec(analysis=True, paused=True), 3
    assert r.tick(1).status.phase == Phase.PAUSED
    d = r.tick(10, bad())
    assert weights(d) == [0] and d.status.phase == Phase.ROLLED_BACK


def test_unpausing_advances_at_once_when_the_hold_passed_and_analysis_is_healthy() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(1, request=req("pause", "p"))
    r.tick(70, ok())
    d = r.tick(1, request=req("resume", "r"))
    assert weights(d) == [25] and reasons(d) == ["Resumed", "StageAdvanced"]
    assert d.status.phase == Phase.PROGRESSING


# --- requests ----------------------------------------------------------------------------------


def test_a_request_already_handled_is_ignored() -> None:
    r = Rollout(make_spec())
    r.tick()
    d = r.tick(1, request=req("promote", "abc"))
    assert weights(d) == [25]
    d = r.tick(1, request=req("promote", "abc"))
    assert d.actions == () and d.status.current_weight == 25
    assert d.status.last_request is not None and d.status.last_request.handled_at == T0 + seconds(1)


def test_promote_skips_the_hold_and_the_analysis_gate() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(1, request=req("pause", "p"))
    d = r.tick(1, request=req("promote", "x"))
    assert weights(d) == [25] and reasons(d)[0] == "Promoted"
    assert d.status.manual_pause is False and d.status.phase == Phase.PROGRESSING
    assert d.status.stage_started_at == r.now
    assert d.status.last_request is not None and d.status.last_request.id == "x"


def test_promote_at_the_last_stage_succeeds() -> None:
    r = Rollout(make_spec(stages=((50, "1h"), (100, "1h"))))
    r.tick()
    r.tick(1, request=req("promote", "1"))
    d = r.tick(1, request=req("promote", "2"))
    assert d.status.phase == Phase.SUCCEEDED and reasons(d) == ["Promoted", "Succeeded"]


def test_promote_in_pending_starts() -> None:
    d = decide(make_spec(paused=False), FeatureRolloutStatus(), generation=1, now=T0, request=req("promote"))
    assert weights(d) == [10] and d.status.phase == Phase.PROGRESSING


def test_promote_on_a_terminal_phase_is_ignored_with_an_event() -> None:
    r = Rollout(make_spec())
    r.tick()
    r.tick(1, request=req("abort", "a"))
    d = r.tick(1, request=req("promote", "p"))
    assert weights(d) == [] and d.status.phase == Phase.ROLLED_BACK
    assert events(d)[0].type == "Normal" and "ignored" in events(d)[0].message
    assert d.status.last_request is not None and d.status.last_request.id == "p"


def test_pause_and_resume_requests_set_and_clear_manual_pause() -> None:
    r = Rollout(make_spec())
    r.tick()
    d = r.tick(1, request=req("pause", "1"))
    assert d.status.manual_pause and d.status.phase == Phase.PAUSED and reasons(d) == ["Paused"]
    d = r.tick(1, request=req("resume", "2"))
    assert not d.status.manual_pause and d.status.phase == Phase.PROGRESSING and reasons(d) == ["Resumed"]


def test_resume_while_spec_paused_stays_paused_and_says_why() -> None:
    r = Rollout(make_spec())
    r.tick()
    r.spec, r.generation = make_spec(paused=True), 2
    r.tick(1, request=req("pause", "1"))
    d = r.tick(1, request=req("resume", "2"))
    assert d.status.phase == Phase.PAUSED and not d.status.manual_pause
    assert "spec.paused" in (d.status.message or "") and "resume" in (d.status.message or "")


def test_abort_rolls_back_to_zero() -> None:
    r = Rollout(make_spec())
    r.tick()
    r.tick(60)
    d = r.tick(1, request=req("abort"))
    assert d.actions[0] == SetWeight(0)
    assert events(d)[0].type == "Warning" and events(d)[0].reason == "Aborted"
    assert d.status.phase == Phase.ROLLED_BACK and d.status.current_weight == 0
    assert cond(d, "Degraded") == ("True", "Aborted")
    assert cond(d, "Progressing") == ("False", "Aborted")


def test_abort_on_a_succeeded_rollout_takes_the_flag_to_zero() -> None:
    """Issue 19: the kill switch works on a finished rollout too (it used to be ignored)."""
    r = Rollout(make_spec(stages=((100, None),)))
    r.tick()
    assert r.status.phase == Phase.SUCCEEDED
    d = r.tick(1, request=req("abort"))
    assert weights(d) == [0] and reasons(d) == ["Aborted"]
    assert d.status.phase == Phase.ROLLED_BACK and d.status.current_weight == 0
    assert d.status.halt is not None and d.status.halt.reason == "Aborted"
    assert "after it Succeeded" in (d.status.message or "")


def test_abort_on_a_rollout_already_at_zero_is_ignored() -> None:
    r = Rollout(make_spec(stages=((100, None),)))
    r.tick()
    r.tick(1, request=req("abort", "a"))
    d = r.tick(1, request=req("abort", "b"))
    assert weights(d) == [] and d.status.phase == Phase.ROLLED_BACK and reasons(d) == ["RequestIgnored"]
    assert "at 0% already" in (d.status.last_request.reason or "")  # type: ignore[union-attr]


def test_retry_restarts_a_rolled_back_rollout_at_the_first_stage() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(1, request=req("pause", "p"))
    r.tick(5, bad())
    assert r.status.phase == Phase.ROLLED_BACK
    d = r.tick(60, request=req("retry", "r"))
    assert weights(d) == [10] and reasons(d) == ["Retried", "Started"]
    s = d.status
    assert (s.phase, s.current_stage, s.metrics, s.manual_pause) == (Phase.PROGRESSING, 0, [], False)
    assert (s.started_at, s.finished_at, s.halt, s.last_analysis_at) == (r.now, None, None, None)
    assert cond(d, "Degraded") == ("False", "AsExpected")


def test_retry_elsewhere_is_ignored() -> None:
    r = Rollout(make_spec())
    r.tick()
    d = r.tick(1, request=req("retry"))
    assert weights(d) == [] and reasons(d) == ["RequestIgnored"]
    assert "Progressing" in events(d)[0].message


# --- spec changes ------------------------------------------------------------------------------


def test_a_spec_change_keeps_the_weight_and_restarts_the_stage_clock() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(60, ok())
    r.tick(10, ok())  # 25%, stage 2/4, evaluated
    r.change_spec(make_spec(stages=((20, "5m"), (40, "5m"), (100, None)), analysis=True))
    d = r.tick(5)
    assert d.actions[0] == SetWeight(25) and reasons(d) == ["SpecChanged"]
    s = d.status
    assert (s.current_stage, s.current_weight, s.stage_started_at) == (0, 25, r.now)
    assert s.metrics == [] and s.last_analysis_at is None and s.observed_generation == 2
    assert weights(r.tick(299, ok())) == []  # the new 5m counts from the change
    assert weights(r.tick(1, ok())) == [40]


def test_a_spec_change_below_the_new_first_stage_applies_stage_zero() -> None:
    r = Rollout(make_spec())
    r.tick()
    r.change_spec(make_spec(stages=((30, "1m"), (100, None))))
    d = r.tick(5)
    assert weights(d) == [30] and d.status.current_stage == 0


def test_a_spec_change_on_a_terminal_rollout_stays_terminal() -> None:
    r = Rollout(make_spec())
    r.tick()
    r.tick(1, request=req("abort"))
    r.change_spec(make_spec(stages=((5, "1m"), (100, None))))
    d = r.tick(5)
    assert weights(d) == [] and d.status.phase == Phase.ROLLED_BACK and d.status.observed_generation == 2
    assert reasons(d) == ["SpecChanged"] and "`featurerollout retry`" in (d.status.message or "")
    assert r.tick(5).actions == ()


def test_observed_generation_is_set_on_every_decision() -> None:
    r = Rollout(make_spec(), generation=7)
    assert r.tick().status.observed_generation == 7
    r.generation = 8  # e.g. a label-only change that bumped nothing we use
    assert r.tick(1).status.observed_generation == 8


# --- conditions and messages -------------------------------------------------------------------


def test_conditions_follow_the_phase() -> None:
    r = Rollout(make_spec(analysis=True))
    d = r.tick()
    assert [c.type for c in d.status.conditions] == ["Progressing", "Ready", "Degraded", "Analysis"]
    assert cond(d, "Analysis") == ("Unknown", "Pending")
    assert cond(d, "Degraded") == ("False", "AsExpected")
    since = d.status.condition("Progressing")
    d = r.tick(5, ok())
    assert d.status.condition("Progressing").last_transition_time == since.last_transition_time  # type: ignore[union-attr]
    d = r.tick(1, request=req("pause"))
    assert d.status.condition("Progressing").last_transition_time == r.now  # type: ignore[union-attr]
    assert Rollout(make_spec()).tick().status.condition("Analysis") is None


def test_the_status_message_speaks_to_people() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(60, ok())
    d = r.tick(25, ok(0.002))
    assert d.status.message == "stage 2/4 at 25%: error-rate 0.002 <= 0.01; holds at least until 2026-01-01T12:02:00Z"


def test_decide_is_idempotent_when_nothing_changes() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(20, ok())
    again = decide(r.spec, r.status, generation=r.generation, now=r.now + seconds(1))
    assert again.status == r.status and again.actions == ()


def test_analysis_is_due_every_interval_while_progressing_or_paused() -> None:
    spec = make_spec(analysis=True, interval="10s")
    r = Rollout(spec)
    assert not r.due()  # pending: nothing exposed
    r.tick()
    assert r.due()
    r.tick(0, ok())
    assert not analysis_due(spec, r.status, r.now + seconds(9))
    assert analysis_due(spec, r.status, r.now + seconds(10))
    assert not analysis_due(make_spec(), r.status, r.now + seconds(10))


# --- target errors -----------------------------------------------------------------------------


def test_target_failed_keeps_the_old_status_and_warns_once() -> None:
    r = Rollout(make_spec())
    r.tick()
    before = r.status
    d = decide(r.spec, before, generation=1, now=r.now + seconds(60))
    assert weights(d) == [25]
    f = settle(r.spec, before, d, WriteOutcome.failed("InvalidDocument",
                                                      "feature-flags/flags.flagd.json is not JSON: line 1"),
               generation=1, now=r.now + seconds(60))
    assert (f.status.current_weight, f.status.current_stage, f.status.phase) == (10, 0, Phase.PROGRESSING)
    assert cond(f, "Degraded") == ("True", "InvalidDocument")
    assert f.actions == (EmitEvent("Warning", "InvalidDocument",
                                   "feature-flags/flags.flagd.json is not JSON: line 1"),)
    assert f.next_check == r.now + seconds(65)
    # the next tick tries the same change again; failing again raises no new event
    d2 = decide(r.spec, f.status, generation=1, now=r.now + seconds(65))
    assert weights(d2) == [25]
    f2 = settle(r.spec, f.status, d2, WriteOutcome.failed("InvalidDocument",
                                                         "feature-flags/flags.flagd.json is not JSON: line 1"),
                generation=1, now=r.now + seconds(65))
    assert f2.actions == ()
    assert f2.next_check is not None and seconds(5) <= f2.next_check - (r.now + seconds(65)) <= seconds(60)
    # once it works, Degraded clears
    d3 = decide(r.spec, f2.status, generation=1, now=r.now + seconds(70))
    assert weights(d3) == [25] and cond(d3, "Degraded") == ("False", "AsExpected")


def test_decide_rewrites_the_weight_while_the_target_is_degraded() -> None:
    r = Rollout(make_spec())
    r.tick()
    f = settle(r.spec, r.status, None, WriteOutcome.failed("TargetError", "503"), generation=1,
               now=r.now + seconds(1))
    d = decide(r.spec, f.status, generation=1, now=r.now + seconds(6))
    assert weights(d) == [10]


def test_a_control_request_type_is_a_plain_value() -> None:
    assert req("abort", "x") == ControlRequest(id="x", action=req("abort").action)


def test_the_stage_column_reads_n_of_m() -> None:
    r = Rollout(make_spec())
    assert r.tick().status.stage == "1/4"
    assert r.tick(60).status.stage == "2/4"
    assert Rollout(make_spec(paused=True)).tick().status.stage is None


def test_cannot_proceed_fails_once_keeps_the_weight_and_waits_for_retry() -> None:
    r = Rollout(make_spec())
    r.tick()
    f = cannot_proceed(r.spec, r.status, generation=1, now=r.now, reason="InvalidSpec",
                       message="spec.stages[1].weight: 5 is not greater than the previous stage's 10")
    assert f.status.phase == Phase.FAILED
    assert f.status.current_weight == 10  # nothing says the feature hurts: exposure is not taken away
    assert cond(f, "Degraded") == ("True", "InvalidSpec")
    assert cond(f, "Ready") == ("False", "Failed")
    assert f.actions == (EmitEvent("Warning", "InvalidSpec",
                                   "spec.stages[1].weight: 5 is not greater than the previous stage's 10"),)
    assert f.next_check is None
    again = cannot_proceed(r.spec, f.status, generation=1, now=r.now + seconds(30), reason="InvalidSpec",
                           message="spec.stages[1].weight: 5 is not greater than the previous stage's 10")
    assert again.actions == () and again.status == f.status
    retried = decide(r.spec, f.status, generation=1, now=r.now + seconds(31), request=req("retry", "r1"))
    assert retried.status.phase == Phase.PROGRESSING


def test_cannot_proceed_without_a_readable_spec_has_no_analysis_condition() -> None:
    f = cannot_proceed(None, FeatureRolloutStatus(), generation=3, now=T0, reason="InvalidSpec",
                       message="spec.stages[1].weight: 5 is not greater than the previous stage's 10")
    assert f.status.phase == Phase.FAILED and f.status.observed_generation == 3
    assert {c.type for c in f.status.conditions} == {"Progressing", "Ready", "Degraded"}


def test_settle_retimes_the_stage_and_its_words_from_the_write_so_the_next_look_writes_nothing() -> None:
    spec = make_spec()
    d = decide(spec, FeatureRolloutStatus(), generation=1, now=T0)
    held = settle(spec, FeatureRolloutStatus(), d, WriteOutcome.applied(T0 + seconds(1.5)), generation=1, now=T0)
    assert held.status.stage_started_at == T0 + seconds(1.5)
    assert "holds at least until 2026-01-01T12:01:01Z" in (held.status.message or "")
    assert held.next_check == T0 + seconds(61.5)
    assert held.actions == d.actions
    later = decide(spec, held.status, generation=1, now=T0 + seconds(30))
    assert later.status == held.status and later.actions == ()


def test_settle_changes_nothing_when_nothing_was_written_or_no_stage_started() -> None:
    spec = make_spec()
    d = decide(spec, FeatureRolloutStatus(), generation=1, now=T0)
    assert settle(spec, FeatureRolloutStatus(), d, WriteOutcome(), generation=1, now=T0) == d
    later = decide(spec, d.status, generation=1, now=T0 + seconds(30))  # mid-stage: no stage starts
    assert settle(spec, d.status, later, WriteOutcome.applied(T0 + seconds(31)), generation=1,
                  now=T0 + seconds(30)) == later
