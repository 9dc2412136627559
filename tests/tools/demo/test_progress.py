"""The demo's compact progress line, its change detection, and the summary (pure)."""

from __future__ import annotations

from typing import Any

from featurerollout_demo.progress import Outcome, change_key, compact_line, is_terminal, summary, warning_events

SPEC = {
    "flag": "new-search",
    "target": {"configMap": {"name": "feature-flags"}},
    "stages": [{"weight": 10, "duration": "8s"}, {"weight": 25, "duration": "8s"}, {"weight": 100}],
    "analysis": {
        "interval": "2s",
        "prometheus": {"address": "http://127.0.0.1:9090"},
        "metrics": [{"name": "error-rate", "query": "x", "max": 0.05, "failureLimit": 1}],
    },
}


def body(name: str = "new-search", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": SPEC, "status": status}


def metric(value: float | None, result: str, failures: int = 0) -> dict[str, Any]:
    return {"name": "error-rate", "value": value, "result": result, "consecutiveFailures": failures}


def test_compact_line_before_the_operator_has_seen_it() -> None:
    line = compact_line({"metadata": {"name": "new-search"}, "spec": SPEC})
    assert line.split() == ["new-search", "Pending", "stage", "1/3", "0%"]


def test_compact_line_shows_stage_weight_metric_budget_and_result() -> None:
    line = compact_line(body(phase="Progressing", currentStage=1, currentWeight=25, stage="2/3",
                             metrics=[metric(0.00123456, "Passed")]))
    assert line.split() == ["new-search", "Progressing", "stage", "2/3", "25%", "error-rate", "0.001235", "(<=",
                            "0.05)", "Passed"]


def test_compact_line_shows_a_failure_streak_and_no_data() -> None:
    assert compact_line(body(phase="Progressing", currentWeight=10, metrics=[metric(0.5, "Failed", 1)])).endswith(
        "error-rate 0.5 (<= 0.05) Failed x1")
    assert compact_line(body(phase="Progressing", currentWeight=10, metrics=[metric(None, "NoData")])).endswith(
        "error-rate - (<= 0.05) NoData")


def test_change_key_ignores_a_new_value_with_the_same_result() -> None:
    first = body(phase="Progressing", currentStage=0, currentWeight=10, metrics=[metric(0.0, "Passed")])
    same = body(phase="Progressing", currentStage=0, currentWeight=10, metrics=[metric(0.001, "Passed")])
    assert change_key(first) == change_key(same)


def test_change_key_changes_with_phase_stage_weight_result_and_streak() -> None:
    base = body(phase="Progressing", currentStage=0, currentWeight=10, metrics=[metric(0.0, "Passed")])
    others = [
        body(phase="RolledBack", currentStage=0, currentWeight=10, metrics=[metric(0.0, "Passed")]),
        body(phase="Progressing", currentStage=1, currentWeight=10, metrics=[metric(0.0, "Passed")]),
        body(phase="Progressing", currentStage=0, currentWeight=25, metrics=[metric(0.0, "Passed")]),
        body(phase="Progressing", currentStage=0, currentWeight=10, metrics=[metric(0.5, "Failed", 1)]),
        body(phase="Progressing", currentStage=0, currentWeight=10, metrics=[]),
    ]
    assert all(change_key(other) != change_key(base) for other in others)


def test_terminal_phases() -> None:
    assert [is_terminal(body(phase=p)) for p in ("Pending", "Progressing", "Paused")] == [False] * 3
    assert [is_terminal(body(phase=p)) for p in ("Succeeded", "RolledBack", "Failed")] == [True] * 3
    # A rollback recorded before its 0% is written (engine.rollback_intent) is not finished yet.
    assert not is_terminal(body(phase="RolledBack", currentWeight=10))
    assert is_terminal(body(phase="RolledBack", currentWeight=0))


ROLLED_BACK = body(
    phase="RolledBack", currentWeight=0, startedAt="2026-01-01T00:00:00Z", finishedAt="2026-01-01T00:00:04.4Z",
    conditions=[{"type": "Degraded", "status": "True", "reason": "BudgetExceeded",
                 "message": "error-rate 0.86 exceeds its budget <= 0.05", "lastTransitionTime": "x"}],
)
EVENTS = [
    {"involvedObject": {"name": "new-search"}, "type": "Warning", "reason": "RolledBack", "message": "rolled back",
     "lastTimestamp": "2026-01-01T00:00:04Z"},
    {"involvedObject": {"name": "new-search"}, "type": "Warning", "reason": "AnalysisFailing", "message": "1 of 1",
     "lastTimestamp": "2026-01-01T00:00:02Z"},
    {"involvedObject": {"name": "new-search"}, "type": "Normal", "reason": "StageAdvanced", "message": "10%"},
    {"involvedObject": {"name": "new-checkout"}, "type": "Warning", "reason": "Other", "message": "not ours"},
]


def test_warning_events_are_the_rollouts_own_oldest_first() -> None:
    assert [e["reason"] for e in warning_events(EVENTS, "new-search")] == ["AnalysisFailing", "RolledBack"]


def test_summary_of_the_expected_outcome() -> None:
    outcomes = [
        Outcome(body("new-checkout", phase="Succeeded", currentWeight=100), "Succeeded", 100.0, EVENTS, took=25.2),
        Outcome(ROLLED_BACK, "RolledBack", 0.0, EVENTS, took=99),
    ]
    lines, problems = summary(outcomes)
    assert problems == []
    assert lines[0] == "summary:"
    assert lines[1].split() == ["new-checkout", "Succeeded", "weight", "100%", "took", "25s", "as", "expected"]
    assert lines[2:4] == ["    flag in the ConfigMap: 100%", "    Warning Other: not ours"]
    assert "took 4s" in lines[4]  # the status's own timestamps win over the demo's clock
    assert lines[5:] == [
        "    flag in the ConfigMap: 0%",
        "    reason: BudgetExceeded: error-rate 0.86 exceeds its budget <= 0.05",
        "    Warning AnalysisFailing: 1 of 1",
        "    Warning RolledBack: rolled back",
    ]


def test_summary_reports_every_difference_from_the_expectation() -> None:
    outcomes = [
        Outcome(body("new-checkout", phase="Progressing", currentWeight=25), "Succeeded", 25.0),
        Outcome(body(phase="RolledBack", currentWeight=0), "RolledBack", 10.0),
    ]
    lines, problems = summary(outcomes)
    assert problems == [
        "new-checkout is Progressing, expected Succeeded",
        "new-checkout's status weight is 25%, expected 100%",
        "the ConfigMap gives new-checkout 25%, expected 100%",
        "the ConfigMap gives new-search 10%, expected 0%",
    ]
    assert "NOT as expected (Succeeded expected)" in lines[1]
    assert "took ?" in lines[1]


def test_a_missing_flag_is_a_problem() -> None:
    _, problems = summary([Outcome(body(phase="RolledBack", currentWeight=0), "RolledBack", None)])
    assert problems == ["the ConfigMap gives new-search missing, expected 0%"]
