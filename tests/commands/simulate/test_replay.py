"""The replay loop of `featurerollout simulate`: the pure engine over simulated time, measuring through
an injected `Measure`. Here the numbers come from in-memory functions of (status, instant), so that
what the loop hands the measuring path (the look's instant, the stage start) can be checked;
tests/commands/simulate/test_simulate_prometheus.py and test_live_vs_replay.py measure through the operator's
own path on a real Prometheus."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from featurerollout.api import FeatureRolloutSpec, FeatureRolloutStatus, MetricResult, Phase, parse_spec
from featurerollout.commands.simulate import (
    Measure,
    Replay,
    parse_time,
    planned_looks,
    queries_per_look,
    replay,
    summary,
    timeline_text,
)
from featurerollout.core.measurement import Measurement
from featurerollout.stats.sequential import Arm

START = datetime(2026, 1, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def spec(*, failure_limit: int = 1, on_no_data: str = "Hold", compare: bool = False,
         automatic: bool = True) -> FeatureRolloutSpec:
    metric: dict[str, object]
    if compare:
        arm = {"errors": "e{{window}}", "total": "t{{window}}"}
        metric = {"name": "vs", "compare": {"treatment": arm, "control": arm, "maxIncrease": 0.01,
                                           "minSamplePerArm": 100}}
    else:
        metric = {"name": "err", "query": "q", "max": 0.05, "failureLimit": failure_limit}
    return parse_spec({
        "flag": "f", "target": {"configMap": {"name": "c"}},
        "stages": [{"weight": 10, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100}],
        "analysis": {"interval": "1m", "prometheus": {"address": "http://p:9090"}, "metrics": [metric],
                     "onNoData": on_no_data},
        "rollback": {"automatic": automatic},
    })


def by_minute(value: Callable[[int], float | None]) -> Measure:
    """`err` at each instant: value(minutes since START), None for no data."""
    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        found = value(int((at - START) / MINUTE))
        return {"err": Measurement.no_data("nothing") if found is None else Measurement.of(found)}
    return measure


def run(s: FeatureRolloutSpec, measure: Measure, minutes: int = 240, step: timedelta | None = None) -> Replay:
    return asyncio.run(replay(s, measure, start=START, end=START + MINUTE * minutes, step=step))


def test_a_healthy_history_succeeds_when_the_stages_have_held() -> None:
    result = run(spec(), by_minute(lambda _: 0.01))
    assert result.phase == Phase.SUCCEEDED
    # 1h at 10%, 1h at 50%, then 100% without a duration: done at its first fresh evaluation.
    assert result.finished_at == START + timedelta(hours=2, minutes=1)
    assert [(s.weight, s.start) for s in result.stages] == [
        (10, START), (50, START + timedelta(hours=1)), (100, START + timedelta(hours=2))]
    assert "SUCCEEDED" in summary(result)
    assert not [m for m in result.timeline if m.kind == "Failed"]
    # One look a minute, as the operator: the first at the start.
    assert [e.at for e in result.evaluations[:3]] == [START, START + MINUTE, START + 2 * MINUTE]


@pytest.mark.parametrize("failure_limit", [0, 1, 3])
def test_a_bad_stretch_rolls_back_at_the_evaluation_past_the_failure_limit(failure_limit: int) -> None:
    bad_from = 90  # minute 90: in the 50% stage
    result = run(spec(failure_limit=failure_limit), by_minute(lambda m: 0.5 if m >= bad_from else 0.01))
    assert result.phase == Phase.ROLLED_BACK
    assert result.rolled_back_at == START + MINUTE * (bad_from + failure_limit)
    failed = [m for m in result.timeline if m.kind == "Failed"]
    assert [m.at for m in failed] == [START + MINUTE * (bad_from + i) for i in range(failure_limit + 1)]
    assert "0.5 vs budget <= 0.05" in failed[0].text
    assert result.timeline[-1].kind == "RolledBack"
    assert result.stages[-1].end == result.rolled_back_at
    assert timeline_text(result)[-1].startswith((START + MINUTE * (bad_from + failure_limit)).isoformat()[:16])


def test_missing_data_holds_the_stage() -> None:
    result = run(spec(), by_minute(lambda m: None if 50 <= m < 80 else 0.01))
    # The first stage could not advance at 1h (no data): it advances at the first fresh pass, minute 80.
    assert result.stages[1].start == START + MINUTE * 80
    assert result.phase == Phase.SUCCEEDED


def test_the_end_of_the_range_stops_a_rollout_in_progress() -> None:
    result = run(spec(), by_minute(lambda _: 0.01), minutes=90)
    assert result.phase == Phase.PROGRESSING
    assert "still Progressing" in summary(result)


def test_each_look_is_measured_with_the_facts_the_operator_has_then() -> None:
    """The measuring path gets the look's instant and the status before the look: its stage and the
    stage's start, from which the operator renders {{window}} (the stage so far)."""
    seen: list[tuple[datetime, datetime | None, int]] = []

    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        seen.append((at, status.stage_started_at, status.current_stage))
        minutes = (at - (status.stage_started_at or at)) / MINUTE
        return {"vs": Measurement.of_counts(Arm(1 * minutes, 100 * minutes), Arm(1 * minutes, 900 * minutes))}

    result = run(spec(compare=True), measure)
    assert result.phase == Phase.SUCCEEDED
    at = START + timedelta(hours=1, minutes=30)
    assert (at, START + timedelta(hours=1), 1) in seen
    status = next(e for e in result.evaluations if e.at == at).metrics[0]
    assert status.treatment is not None and status.control is not None
    assert (status.treatment.errors, status.treatment.total) == (30, 3000)
    assert (status.control.errors, status.control.total) == (30, 27000)


def test_compare_fails_when_the_treatment_is_clearly_worse() -> None:
    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        minutes = (at - (status.stage_started_at or at)) / MINUTE
        return {"vs": Measurement.of_counts(Arm(20 * minutes, 100 * minutes), Arm(1 * minutes, 900 * minutes))}

    result = run(spec(compare=True), measure)
    assert result.phase == Phase.ROLLED_BACK
    assert result.evaluations[-1].metrics[0].result == MetricResult.FAILED
    assert result.rolled_back_at is not None and result.rolled_back_at <= START + timedelta(minutes=10)


def test_a_live_runs_instants_are_replayed_exactly() -> None:
    """With `looks` and `held` (a live run's), the replay measures at those instants only and holds each
    stage from when the live target held it."""
    looks = [START + timedelta(seconds=1 + 61 * i) for i in range(130)]
    held = {0: START, 1: START + timedelta(hours=1, seconds=3)}
    instants: list[datetime] = []

    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        instants.append(at)
        return {"err": Measurement.of(0.01)}

    result = asyncio.run(replay(spec(), measure, start=START, end=START + timedelta(hours=3), looks=looks,
                                held=held))
    assert instants == looks[:len(instants)] and len(instants) > 100
    assert [(s.stage, s.start) for s in result.stages][:2] == sorted(held.items())


def test_step_looks_less_often_and_the_count_is_known_before() -> None:
    s = spec()
    instants: list[datetime] = []

    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        instants.append(at)
        return {"err": Measurement.of(0.01)}

    result = run(s, measure, step=10 * MINUTE)
    assert result.phase == Phase.SUCCEEDED
    assert all(b - a >= 10 * MINUTE for a, b in itertools.pairwise(instants))
    assert len(instants) <= planned_looks(s, START, START + 240 * MINUTE, 10 * MINUTE)
    assert planned_looks(s, START, START + 240 * MINUTE, None) == 241 + 3
    assert queries_per_look(s) == 1 and queries_per_look(spec(compare=True)) == 4


def test_times_rfc3339_now_and_relative() -> None:
    now = datetime(2026, 1, 8, 12, tzinfo=UTC)
    assert parse_time("now", now) == now
    assert parse_time("-7d", now) == now - timedelta(days=7)
    assert parse_time("-36h", now) == now - timedelta(hours=36)
    assert parse_time("2026-01-01T00:00:00Z", now) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday", now)
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2026-01-01T00:00:00", now)


def test_without_automatic_rollback_it_pauses_for_a_person_and_stops_there() -> None:
    result = run(spec(failure_limit=0, automatic=False), by_minute(lambda m: 0.5 if m >= 30 else 0.01))
    assert result.phase == Phase.PAUSED
    assert result.rolled_back_at is None
    assert result.evaluations[-1].at == START + MINUTE * 30
    assert "PAUSED for a person" in summary(result) and "automatic rollback is off" in summary(result)
