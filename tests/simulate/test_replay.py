"""The pure replay of `featurerollout simulate`: the engine over a recorded history, with no I/O.

The histories are built here in memory (a grid of samples); tests/simulate/test_simulate_prometheus.py
runs the same replay on a real Prometheus.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from featurerollout.api import FeatureRolloutSpec, FeatureRolloutStatus, MetricResult, Phase, parse_spec
from featurerollout.simulate import Grid, History, measure_at, parse_time, replay, summary, timeline_text

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


def values(points: int, good: float = 0.01, bad: float = 0.5, bad_from: int | None = None) -> list[float | None]:
    return [bad if bad_from is not None and i >= bad_from else good for i in range(points)]


def test_a_healthy_history_succeeds_when_the_stages_have_held() -> None:
    grid = Grid(START, MINUTE, 4 * 60)
    result = replay(spec(), History(grid, {"err": values(grid.points)}), start=START, end=grid.end)
    assert result.phase == Phase.SUCCEEDED
    # 1h at 10%, 1h at 50%, then 100% without a duration: done at its first fresh evaluation.
    assert result.finished_at == START + timedelta(hours=2, minutes=1)
    assert [(s.weight, s.start) for s in result.stages] == [
        (10, START), (50, START + timedelta(hours=1)), (100, START + timedelta(hours=2))]
    assert "SUCCEEDED" in summary(result)
    assert not [m for m in result.timeline if m.kind == "Failed"]


@pytest.mark.parametrize("failure_limit", [0, 1, 3])
def test_a_bad_stretch_rolls_back_at_the_evaluation_past_the_failure_limit(failure_limit: int) -> None:
    grid = Grid(START, MINUTE, 4 * 60)
    bad_from = 90  # minute 90: in the 50% stage
    history = History(grid, {"err": values(grid.points, bad_from=bad_from)})
    result = replay(spec(failure_limit=failure_limit), history, start=START, end=grid.end)
    assert result.phase == Phase.ROLLED_BACK
    assert result.rolled_back_at == START + MINUTE * (bad_from + failure_limit)
    failed = [m for m in result.timeline if m.kind == "Failed"]
    assert [m.at for m in failed] == [START + MINUTE * (bad_from + i) for i in range(failure_limit + 1)]
    assert "0.5 vs budget <= 0.05" in failed[0].text
    assert result.timeline[-1].kind == "RolledBack"
    assert result.stages[-1].end == result.rolled_back_at
    lines = timeline_text(result)
    assert lines[-1].startswith((START + MINUTE * (bad_from + failure_limit)).isoformat()[:16])


def test_missing_samples_are_no_data_and_hold_the_stage() -> None:
    grid = Grid(START, MINUTE, 4 * 60)
    samples = values(grid.points)
    for i in range(50, 80):  # half an hour with nothing recorded, across the end of the first stage
        samples[i] = None
    result = replay(spec(), History(grid, {"err": samples}), start=START, end=grid.end)
    # The first stage could not advance at 1h (no data): it advances at the first fresh pass, minute 80.
    assert result.stages[1].start == START + MINUTE * 80
    assert result.phase == Phase.SUCCEEDED


def test_the_end_of_the_range_stops_a_rollout_in_progress() -> None:
    grid = Grid(START, MINUTE, 90)
    result = replay(spec(), History(grid, {"err": values(grid.points)}), start=START, end=grid.end)
    assert result.phase == Phase.PROGRESSING
    assert "still Progressing" in summary(result)


def test_compare_counts_are_summed_over_the_stage_so_far() -> None:
    grid = Grid(START, MINUTE, 4 * 60)
    s = spec(compare=True)
    per_step = {"compare.treatment.errors": [1.0] * grid.points, "compare.treatment.total": [100.0] * grid.points,
                "compare.control.errors": [1.0] * grid.points, "compare.control.total": [900.0] * grid.points}
    history = History(grid, counts={"vs": per_step})
    result = replay(s, history, start=START, end=grid.end)
    assert result.phase == Phase.SUCCEEDED
    # At minute 30 of the second stage (it began at 1h), the counts are 30 steps' worth.
    at = START + timedelta(hours=1, minutes=30)
    evaluation = next(e for e in result.evaluations if e.at == at)
    status = evaluation.metrics[0]
    assert status.treatment is not None and status.control is not None
    assert (status.treatment.errors, status.treatment.total) == (30, 3000)
    assert (status.control.errors, status.control.total) == (30, 27000)


def test_compare_fails_when_the_treatment_is_clearly_worse() -> None:
    grid = Grid(START, MINUTE, 4 * 60)
    per_step = {"compare.treatment.errors": [20.0] * grid.points, "compare.treatment.total": [100.0] * grid.points,
                "compare.control.errors": [1.0] * grid.points, "compare.control.total": [900.0] * grid.points}
    result = replay(spec(compare=True), History(grid, counts={"vs": per_step}), start=START,
                    end=grid.end)
    assert result.phase == Phase.ROLLED_BACK
    evaluation = result.evaluations[-1]
    assert evaluation.metrics[0].result == MetricResult.FAILED
    # 100 treatment requests a step: minSamplePerArm (100) is met at the first fresh look, and 20%
    # against 0.1% is harm the test sees within minutes.
    assert result.rolled_back_at is not None and result.rolled_back_at <= START + timedelta(minutes=10)


def test_measure_at_reads_the_latest_sample_at_or_before_now() -> None:
    grid = Grid(START, MINUTE, 10)
    history = History(grid, {"err": [float(i) for i in range(10)]})
    out = measure_at(spec(), history, FeatureRolloutStatus(), START + timedelta(minutes=3, seconds=59))
    assert out["err"].value == 3


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
    grid = Grid(START, MINUTE, 4 * 60)
    history = History(grid, {"err": values(grid.points, bad_from=30)})
    result = replay(spec(failure_limit=0, automatic=False), history, start=START, end=grid.end)
    assert result.phase == Phase.PAUSED
    assert result.rolled_back_at is None
    assert result.evaluations[-1].at == START + MINUTE * 30
    assert "PAUSED for a person" in summary(result) and "automatic rollback is off" in summary(result)
