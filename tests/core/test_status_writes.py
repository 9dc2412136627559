"""Pure: which evaluations are worth a status write under --analysis-status-every."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout.core.statuswrites import verdict, worth_writing, write_spread
from featurerollout.process.sharding import shard_of

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
EVERY = timedelta(seconds=60)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def status(evaluated: float, value: float = 0.001, result: str = "Passed", failures: int = 0) -> dict[str, Any]:
    return {
        "phase": "Progressing", "currentWeight": 10, "currentStage": 0, "stageStartedAt": at(0),
        "lastAnalysisAt": at(evaluated),
        "message": f"stage 1/2 at 10%; error-rate {value:g} within 0.01",
        "metrics": [{"name": "error-rate", "value": value, "result": result, "consecutiveFailures": failures,
                     "consecutiveErrors": 0, "evaluatedAt": at(evaluated)}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Progressing",
                        "message": f"error-rate {value:g}", "lastTransitionTime": at(0)}],
    }


def test_a_fresher_evaluation_with_the_same_verdict_waits() -> None:
    stored, decided = status(10, 0.001), status(20, 0.002)
    assert verdict(stored) == verdict(decided)
    assert not worth_writing(stored, decided, T0 + timedelta(seconds=20), EVERY)


def test_it_is_written_once_the_stored_one_is_old_enough() -> None:
    stored, decided = status(10), status(70)
    assert worth_writing(stored, decided, T0 + timedelta(seconds=70), EVERY)
    assert not worth_writing(stored, decided, T0 + timedelta(seconds=69), EVERY)


def test_the_wait_is_this_rollouts_share_of_every() -> None:
    stored, decided = status(10), status(55)
    assert not worth_writing(stored, decided, T0 + timedelta(seconds=47), EVERY, spread=0.65)  # 37 s < 39 s
    assert worth_writing(stored, decided, T0 + timedelta(seconds=47), EVERY, spread=0.6)  # 37 s >= 36 s


def test_rollouts_started_together_write_spread_over_half_the_period() -> None:
    # 1,000 rollouts whose stored analysis is as old: their writes fall evenly between 0.5 and 1 x
    # EVERY, the same in every process, and as evenly within one shard (not the shards' hash).
    names = [f"rollout-{i}" for i in range(1000)]
    spreads = [write_spread("bench", n) for n in names]
    assert spreads == [write_spread("bench", n) for n in names]
    assert all(0.5 <= s < 1.0 for s in spreads)
    tenths = [sum(1 for s in spreads if 0.5 + k / 20 <= s < 0.5 + (k + 1) / 20) for k in range(10)]
    assert min(tenths) > 60 and max(tenths) < 140, tenths
    shard = [write_spread("bench", n) for n in names if shard_of("bench", n, 3) == 0]
    assert min(shard) < 0.55 and max(shard) > 0.95


def test_zero_writes_every_evaluation() -> None:
    assert worth_writing(status(10), status(20), T0 + timedelta(seconds=20), timedelta(0))


def test_a_changed_result_or_count_is_written_at_once() -> None:
    stored = status(10)
    assert worth_writing(stored, status(20, 0.5, "Failed", 1), T0 + timedelta(seconds=20), EVERY)
    assert worth_writing(stored, status(20, result="NoData"), T0 + timedelta(seconds=20), EVERY)
    errors = status(20)
    errors["metrics"][0]["consecutiveErrors"] = 1
    assert worth_writing(stored, errors, T0 + timedelta(seconds=20), EVERY)


def test_anything_else_that_changes_is_written_at_once() -> None:
    stored = status(10)
    for field, value in (("currentWeight", 25), ("phase", "Paused"), ("currentStage", 1)):
        decided = status(20)
        decided[field] = value
        assert worth_writing(stored, decided, T0 + timedelta(seconds=20), EVERY), field
    reason = status(20)
    reason["conditions"][0]["reason"] = "Other"
    assert worth_writing(stored, reason, T0 + timedelta(seconds=20), EVERY)


def test_the_first_evaluation_at_a_new_weight_is_written_at_once() -> None:
    # The stage began at 30 s: the stored evaluation (10 s) was taken at the weight before, and the
    # engine promotes only on evaluations taken at the current weight.
    stored, decided = status(10), status(40)
    stored["stageStartedAt"] = decided["stageStartedAt"] = at(30)
    assert worth_writing(stored, decided, T0 + timedelta(seconds=40), EVERY)


def test_no_analysis_yet_is_written() -> None:
    stored = copy.deepcopy(status(10))
    del stored["lastAnalysisAt"]
    stored["metrics"] = []
    assert worth_writing(stored, status(20), T0 + timedelta(seconds=20), EVERY)
