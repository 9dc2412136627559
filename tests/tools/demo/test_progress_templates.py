"""The demo's printout for a rollout budgeted through metric templates, and the check that the slow
rollout stopped on latency alone (pure)."""

from __future__ import annotations

from typing import Any

from featurerollout_demo.progress import Outcome, compact_line

SPEC = {
    "flag": "new-pricing",
    "stages": [{"weight": 10}, {"weight": 100}],
    "analysis": {"metrics": [
        {"name": "error-rate", "templateRef": {"name": "error-rate", "kind": "ClusterMetricTemplate"}, "max": 0.05},
        {"name": "latency-p95", "templateRef": {"name": "latency-p95", "kind": "ClusterMetricTemplate"}},
    ]},
}
TEMPLATES = {"error-rate": {"max": 0.01}, "latency-p95": {"max": 0.1}}


def body(halt: dict[str, Any] | None = None, error_result: str = "Passed") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "RolledBack", "currentWeight": 0, "stage": "1/2",
        "metrics": [{"name": "error-rate", "value": 0, "result": error_result},
                    {"name": "latency-p95", "value": 0.29, "result": "Failed", "consecutiveFailures": 2}],
    }
    if halt is not None:
        status["halt"] = halt
    return {"metadata": {"name": "new-pricing"}, "spec": SPEC, "status": status}


LATENCY_HALT = {"reason": "BudgetExceeded", "message": "latency-p95 0.29 exceeds its budget <= 0.1 at 10%"}


def test_a_template_metric_shows_its_templates_budget_unless_overridden() -> None:
    line = compact_line(body(LATENCY_HALT), TEMPLATES)
    assert "error-rate 0 (<= 0.05) Passed" in line  # the rollout's override
    assert "latency-p95 0.29 (<= 0.1) Failed x2" in line  # the template's
    assert "latency-p95 0.29 Failed x2" in compact_line(body(LATENCY_HALT))  # templates unknown: no budget


def test_the_slow_rollout_must_stop_on_latency_alone() -> None:
    expected = {"cause": "latency-p95", "within_budget": ("error-rate",)}
    assert Outcome(body(LATENCY_HALT), "RolledBack", 0.0, **expected).problems() == []  # type: ignore[arg-type]
    on_errors = {"reason": "BudgetExceeded", "message": "error-rate 0.3 exceeds its budget <= 0.05 at 10%"}
    problems = Outcome(body(on_errors, "Failed"), "RolledBack", 0.0, **expected).problems()  # type: ignore[arg-type]
    assert any("expected to stop on latency-p95's budget" in p for p in problems)
    assert any("error-rate failed its budget" in p for p in problems)
