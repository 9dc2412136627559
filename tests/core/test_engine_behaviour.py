"""One test per behaviour of the engine, named after it: starting, stages, metrics.

Pausing, requests, spec changes, conditions and target errors: test_engine_control.py."""

from __future__ import annotations

from datetime import timedelta

from featurerollout.api import ConditionStatus, MetricResult, Phase
from featurerollout.core.engine import (
    EmitEvent,
    SetWeight,
    next_check,
)
from featurerollout.core.measurement import Measurement
from tests.core.builders import (
    T0,
    Rollout,
    bad,
    cond,
    error,
    events,
    make_spec,
    metric,
    no_data,
    ok,
    reasons,
    req,
    seconds,
    weights,
)

# --- start -------------------------------------------------------------------------------------


def test_starts_a_new_rollout_at_the_first_stage() -> None:
    r = Rollout(make_spec())
    d = r.tick()
    assert d.actions[0] == SetWeight(10)
    assert reasons(d) == ["Started"]
    assert events(d)[0].type == "Normal"
    s = d.status
    assert (s.phase, s.current_stage, s.current_weight) == (Phase.PROGRESSING, 0, 10)
    assert s.stage_started_at == T0 and s.started_at == T0
    assert s.observed_generation == 1
    assert cond(d, "Progressing") == ("True", "RollingOut")
    assert cond(d, "Ready") == ("False", "Progressing")


def test_starts_paused_at_zero_when_paused_at_creation() -> None:
    r = Rollout(make_spec(paused=True))
    d = r.tick()
    assert weights(d) == []
    assert (d.status.phase, d.status.current_weight, d.status.started_at) == (Phase.PAUSED, 0, None)
    assert "spec.paused" in (d.status.message or "")
    assert d.next_check is None
    assert r.tick(5).actions == ()
    r.spec = make_spec(paused=False)
    r.generation += 1
    d = r.tick(5)
    assert weights(d) == [10] and "Started" in reasons(d)
    assert d.status.phase == Phase.PROGRESSING


def test_starts_paused_when_a_pause_request_comes_before_the_start() -> None:
    r = Rollout(make_spec())
    d = r.tick(request=req("pause"))
    assert d.status.phase == Phase.PAUSED and d.status.manual_pause and weights(d) == []
    d = r.tick(1, request=req("resume"))
    assert weights(d) == [10] and d.status.phase == Phase.PROGRESSING


# --- stages ------------------------------------------------------------------------------------


def test_holds_each_stage_for_at_least_its_duration() -> None:
    r = Rollout(make_spec())
    r.tick()
    assert r.tick(59).actions == ()
    assert r.status.current_weight == 10
    d = r.tick(1)
    assert weights(d) == [25]
    assert r.status.stage_started_at == T0 + seconds(60)
    assert events(d) == [EmitEvent("Normal", "StageAdvanced", "stage 2/4: 10% -> 25%")]


def test_advances_on_time_alone_without_analysis() -> None:
    r = Rollout(make_spec())
    r.tick()
    for expected in (25, 50, 100):
        assert weights(r.tick(60)) == [expected]
    assert r.status.phase == Phase.SUCCEEDED


def test_advances_only_when_every_metric_passed_at_the_current_weight() -> None:
    two = [
        {"name": "error-rate", "query": "q", "max": 0.01},
        {"name": "latency", "query": "q", "max": 0.5, "failureLimit": 1},
    ]
    r = Rollout(make_spec(metrics=two))
    r.tick()
    d = r.tick(60, {"error-rate": Measurement.of(0.001), "latency": Measurement.of(0.9)})
    assert weights(d) == [] and r.status.phase == Phase.PROGRESSING  # latency failed, tolerated once
    d = r.tick(1, {"error-rate": Measurement.of(0.001), "latency": Measurement.of(0.2)})
    assert weights(d) == [25]

    r = Rollout(make_spec(metrics=two))
    r.tick()
    d = r.tick(60, {"error-rate": Measurement.of(0.001)})  # latency not evaluated yet
    assert weights(d) == []
    d = r.tick(1, {"latency": Measurement.of(0.1)})
    assert weights(d) == [25]


def test_an_evaluation_from_before_the_stage_began_does_not_count() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    assert weights(r.tick(60, ok())) == [25]  # measured at 10%, advances to 25%
    # the same instant again: that evaluation was at 10%, not at 25%
    assert r.tick(0).actions == ()
    assert weights(r.tick(60)) == []  # the hold passed, but nothing was evaluated at 25%
    assert weights(r.tick(1, ok())) == [50]


def test_no_data_counts_as_passed_only_under_ignore() -> None:
    for policy, advances in (("Hold", False), ("Ignore", True), ("Rollback", False)):
        r = Rollout(make_spec(analysis=True, on_no_data=policy))
        r.tick()
        d = r.tick(60, no_data())
        assert (weights(d) == [25]) is advances, policy


def test_next_check_is_the_earliest_of_stage_end_and_next_analysis() -> None:
    spec = make_spec(analysis=True, interval="10s")
    r = Rollout(spec)
    d = r.tick()
    assert d.next_check == T0  # no analysis yet: measure now
    d = r.tick(3, ok())
    assert d.next_check == T0 + seconds(13)  # analysis every 10s, stage ends at 60s
    d = r.tick(54, ok())  # at 57s
    assert d.next_check == T0 + seconds(60)  # the stage end comes first
    assert next_check(spec, d.status, T0 + seconds(57)) == T0 + seconds(60)
    no_analysis = make_spec()
    r2 = Rollout(no_analysis)
    assert r2.tick().next_check == T0 + seconds(60)


def test_advances_within_a_second_when_ticking_on_next_check() -> None:
    r = Rollout(make_spec(stages=((10, "45s"), (100, None)), analysis=True, interval="30s"))
    r.tick()
    while r.status.current_weight == 10:
        due = r.decisions[-1].next_check
        assert due is not None
        r.now = max(r.now, due)
        r.tick(0, ok() if r.due() else None)
    advanced_at = r.status.stage_started_at
    assert advanced_at is not None
    assert advanced_at - (T0 + seconds(45)) <= timedelta(seconds=1)


def test_last_stage_holds_its_duration_and_needs_a_passing_evaluation_at_100() -> None:
    r = Rollout(make_spec(stages=((50, "10s"), (100, "20s")), analysis=True))
    r.tick()
    r.tick(10, ok())
    assert r.status.current_weight == 100
    assert r.tick(19, ok()).status.phase == Phase.PROGRESSING  # 19s at 100%: not yet
    d = r.tick(1, ok())
    assert d.status.phase == Phase.SUCCEEDED
    assert d.status.finished_at == r.now
    assert weights(d) == [] and reasons(d) == ["Succeeded"]
    assert cond(d, "Ready") == ("True", "Succeeded")
    assert cond(d, "Progressing") == ("False", "Succeeded")
    assert d.next_check is None


def test_last_stage_without_duration_succeeds_at_once_without_analysis() -> None:
    r = Rollout(make_spec(stages=((50, "10s"), (100, None))))
    r.tick()
    d = r.tick(10)
    assert weights(d) == [100] and reasons(d) == ["StageAdvanced", "Succeeded"]
    assert d.status.phase == Phase.SUCCEEDED


# --- metrics -----------------------------------------------------------------------------------


def test_measurements_update_the_metric_status() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(5, ok(0.002))
    m = metric(r)
    assert (m.value, m.result, m.evaluated_at, m.consecutive_failures, m.consecutive_errors) == (
        0.002, MetricResult.PASSED, r.now, 0, 0)
    assert r.status.last_analysis_at == r.now
    assert cond(r.status, "Analysis") == ("True", "Passed")


def test_a_value_outside_min_or_max_fails() -> None:
    spec = make_spec(metrics=[{"name": "error-rate", "query": "q", "min": 0.9, "max": 1.0, "failureLimit": 5}])
    r = Rollout(spec)
    r.tick()
    r.tick(5, ok(0.5))
    assert metric(r).result == MetricResult.FAILED
    r.tick(5, ok(1.5))
    assert metric(r).result == MetricResult.FAILED and metric(r).consecutive_failures == 2
    r.tick(5, ok(0.95))
    assert metric(r).result == MetricResult.PASSED


def test_failures_within_the_failure_limit_hold() -> None:
    r = Rollout(make_spec(metrics=[{"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 2}]))
    r.tick()
    d = r.tick(60, bad())
    assert weights(d) == [] and reasons(d) == ["AnalysisFailing"]
    r.tick(10, bad())
    assert r.status.phase == Phase.PROGRESSING and metric(r).consecutive_failures == 2
    assert cond(r.status, "Analysis") == ("False", "Failed")
    d = r.tick(10, bad())
    assert r.status.phase == Phase.ROLLED_BACK


def test_a_failure_beyond_the_failure_limit_rolls_back() -> None:
    r = Rollout(make_spec(analysis=True))
    r.tick()
    r.tick(60, ok())  # now at 25%, stage 2/4
    d = r.tick(10, bad(0.05))
    expected = "error-rate 0.05 exceeds its budget <= 0.01 at 25% (stage 2/4); rolled back to 0%"
    assert d.actions == (SetWeight(0), EmitEvent("Warning", "RolledBack", expected))
    s = d.status
    assert (s.phase, s.current_weight, s.finished_at) == (Phase.ROLLED_BACK, 0, r.now)
    assert s.message == "rolled back: error-rate 0.05 > 0.01 at 25%"
    degraded = s.condition("Degraded")
    assert degraded is not None and degraded.status == ConditionStatus.TRUE
    assert (degraded.reason, degraded.message) == ("BudgetExceeded", expected)
    assert cond(d, "Ready")[0] == "False" and cond(d, "Progressing")[0] == "False"
    assert d.log is not None and "error-rate 0.05 exceeds its budget <= 0.01" in d.log
    assert d.next_check is None
    assert r.tick(60, ok()).actions == ()  # terminal: waits for a person


def test_a_budget_breach_without_automatic_rollback_pauses() -> None:
    r = Rollout(make_spec(analysis=True, automatic=False))
    r.tick()
    d = r.tick(60, bad())
    assert weights(d) == [] and reasons(d) == ["AnalysisFailing"]
    assert d.status.phase == Phase.PAUSED and d.status.current_weight == 10
    assert cond(d, "Degraded") == ("True", "BudgetExceeded")
    msg = d.status.message or ""
    assert "automatic rollback is off" in msg and "`featurerollout abort`" in msg
    assert "`featurerollout resume`" in msg
    assert r.tick(10, ok()).status.phase == Phase.PAUSED  # waits for a person
    d = r.tick(1, request=req("resume"))
    assert d.status.phase == Phase.PROGRESSING and d.status.halt is None


def test_a_pass_resets_the_counters() -> None:
    r = Rollout(make_spec(analysis=True, metrics=[
        {"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 3}], error_limit=3))
    r.tick()
    r.tick(1, bad())
    r.tick(1, error())
    assert (metric(r).consecutive_failures, metric(r).consecutive_errors) == (1, 1)
    r.tick(1, ok())
    assert (metric(r).consecutive_failures, metric(r).consecutive_errors) == (0, 0)


def test_no_data_under_hold_blocks_promotion_and_keeps_the_counters() -> None:
    r = Rollout(make_spec(metrics=[{"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 3}]))
    r.tick()
    r.tick(1, bad())
    d = r.tick(60, no_data())
    assert weights(d) == [] and r.status.phase == Phase.PROGRESSING
    assert metric(r).result == MetricResult.NO_DATA and metric(r).consecutive_failures == 1
    assert cond(r.status, "Analysis") == ("False", "NoData")


def test_no_data_under_rollback_counts_as_a_failure() -> None:
    r = Rollout(make_spec(analysis=True, on_no_data="Rollback"))
    r.tick()
    d = r.tick(5, no_data())
    assert weights(d) == [0] and d.status.phase == Phase.ROLLED_BACK
    assert cond(d, "Degraded") == ("True", "NoData")


def test_no_data_under_ignore_counts_as_a_pass() -> None:
    r = Rollout(make_spec(metrics=[{"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 3}],
                          on_no_data="Ignore"))
    r.tick()
    r.tick(1, bad())
    d = r.tick(60, no_data())
    assert weights(d) == [25] and metric(r).consecutive_failures == 0


def test_errors_below_the_limit_hold_and_show_prometheus_words() -> None:
    r = Rollout(make_spec(analysis=True, error_limit=2))
    r.tick()
    d = r.tick(60, error("parse error at char 5: unexpected identifier"))
    assert weights(d) == [] and reasons(d) == ["AnalysisError"]
    c = d.status.condition("Analysis")
    assert c is not None and (c.status, c.reason) == (ConditionStatus.FALSE, "Error")
    assert c.message == "error-rate: parse error at char 5: unexpected identifier"
    assert "holds" in (d.status.message or "")
    d = r.tick(10, error())
    assert reasons(d) == []  # the streak was announced once
    assert metric(r).consecutive_errors == 2 and metric(r).consecutive_failures == 0


def test_errors_never_promote() -> None:
    r = Rollout(make_spec(analysis=True, error_limit=100, on_no_data="Ignore"))
    r.tick()
    for _ in range(20):
        assert weights(r.tick(60, error())) == []
    assert r.status.current_weight == 10


def test_errors_beyond_the_limit_roll_back_under_on_error_rollback() -> None:
    r = Rollout(make_spec(analysis=True, error_limit=1, on_error="Rollback"))
    r.tick()
    r.tick(1, error())
    d = r.tick(1, error("connection refused"))
    assert weights(d) == [0] and d.status.phase == Phase.ROLLED_BACK
    assert cond(d, "Degraded") == ("True", "AnalysisError")
    assert "connection refused" in events(d)[0].message


def test_errors_beyond_the_limit_pause_under_on_error_pause() -> None:
    r = Rollout(make_spec(analysis=True, error_limit=1, on_error="Pause"))
    r.tick()
    r.tick(1, error())
    d = r.tick(1, error())
    assert weights(d) == [] and d.status.phase == Phase.PAUSED and d.status.current_weight == 10
    assert cond(d, "Degraded") == ("True", "AnalysisError")
    # a real breach still rolls back while paused
    assert weights(r.tick(10, bad())) == [0]
