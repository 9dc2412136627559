"""What the demo prints about the rollouts: a compact progress line, the full view, the summary.

Everything here is pure (objects in, text out), so that it is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from featurerollout.api import Phase, settled
from featurerollout.commands.status_view import render


def _status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("status") or {}


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name", "?"))


def phase_of(body: Mapping[str, Any]) -> str:
    return str(_status(body).get("phase") or Phase.PENDING.value)


def is_terminal(body: Mapping[str, Any]) -> bool:
    """Finished (api.settled): a rollback whose 0% is still being written is not."""
    return settled(_status(body))


def _stage(body: Mapping[str, Any]) -> str:
    status = _status(body)
    stages = len((body.get("spec") or {}).get("stages") or []) or 4
    return str(status.get("stage") or f"{min(int(status.get('currentStage') or 0), stages - 1) + 1}/{stages}")


def _weight(value: Any) -> str:
    return f"{float(value or 0):g}%"


def _metrics(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in _status(body).get("metrics") or [] if isinstance(m, Mapping)]


def _budgets(body: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Each metric's budget in words; a templateRef metric without its own bounds shows its template's
    (`templates`: the specs of the ClusterMetricTemplates the demo applied, by name)."""
    analysis = (body.get("spec") or {}).get("analysis") or {}
    budgets: dict[str, str] = {}
    for metric in analysis.get("metrics") or []:
        low, high = metric.get("min"), metric.get("max")
        ref = metric.get("templateRef") or {}
        if low is None and high is None and ref.get("name") in (templates or {}):
            template = (templates or {})[ref["name"]]
            low, high = template.get("min"), template.get("max")
        if low is not None and high is not None:
            budgets[metric.get("name", "")] = f"in [{low:g}, {high:g}]"
        elif high is not None:
            budgets[metric.get("name", "")] = f"<= {high:g}"
        elif low is not None:
            budgets[metric.get("name", "")] = f">= {low:g}"
    return budgets


def change_key(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a new compact line worth printing: phase, stage, weight, each metric's result."""
    status = _status(body)
    results = tuple((m.get("name"), m.get("result"), m.get("consecutiveFailures")) for m in _metrics(body))
    return phase_of(body), status.get("currentStage"), status.get("currentWeight"), results


def compact_line(body: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """One line for logs: `new-checkout  Progressing  stage 2/4  25%  error-rate 0.0012 (<= 0.05) Passed`."""
    status = _status(body)
    weight = _weight(status.get("currentWeight"))
    parts = [f"{_name(body):<14}", f"{phase_of(body):<11}", f"stage {_stage(body):<4}", f"{weight:>4}"]
    budgets = _budgets(body, templates)
    for metric in _metrics(body):
        value = metric.get("value")
        shown = "-" if value is None else f"{float(value):.4g}"
        name = str(metric.get("name", "?"))
        budget = f" ({budgets[name]})" if name in budgets else ""
        failures = int(metric.get("consecutiveFailures") or 0)
        streak = f" x{failures}" if failures else ""
        parts.append(f"{name} {shown}{budget} {metric.get('result', '-')}{streak}")
    return "  ".join(parts).rstrip()


def full_view(bodies: Sequence[Mapping[str, Any]], now: datetime, header: str) -> str:
    """The `featurerollout status` view of every rollout, for a terminal redrawn every second."""
    views = [render(dict(body), now) for body in bodies]
    return header + "\n\n" + "\n\n".join(views) + "\n"


# --- the summary --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one rollout, and what the demo expected of it."""

    body: Mapping[str, Any]
    expected_phase: str
    configmap_weight: float | None
    events: list[Mapping[str, Any]] = field(default_factory=list)
    took: float | None = None  # seconds, measured by the demo, when the status carries no timestamps
    # For an expected rollback: the metric whose budget must have caused it, and metrics that must
    # not have failed (the demo's slow rollout is rolled back on latency alone, its errors in budget).
    cause: str | None = None
    within_budget: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return _name(self.body)

    @property
    def phase(self) -> str:
        return phase_of(self.body)

    @property
    def weight(self) -> float:
        return float(_status(self.body).get("currentWeight") or 0)

    @property
    def expected_weight(self) -> float:
        return 100.0 if self.expected_phase == Phase.SUCCEEDED.value else 0.0

    def duration(self) -> float | None:
        """Seconds from the first exposure to the terminal phase (the status's own clock if it has one)."""
        status = _status(self.body)
        started, finished = status.get("startedAt"), status.get("finishedAt")
        if started and finished:
            try:
                return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
            except ValueError:
                pass
        return self.took

    def reason(self) -> str | None:
        """Why it stopped: the Degraded condition's message, else the halt, else the status message."""
        status = _status(self.body)
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Degraded" and condition.get("status") == "True" and condition.get("message"):
                return f"{condition.get('reason')}: {condition['message']}"
        halt = status.get("halt") or {}
        if halt.get("message"):
            return f"{halt.get('reason')}: {halt['message']}"
        return status.get("message")

    def problems(self) -> list[str]:
        """What differs from the expectation (empty: as expected)."""
        found: list[str] = []
        if self.phase != self.expected_phase:
            found.append(f"{self.name} is {self.phase}, expected {self.expected_phase}")
        if self.weight != self.expected_weight:
            found.append(f"{self.name}'s status weight is {self.weight:g}%, expected {self.expected_weight:g}%")
        if self.configmap_weight != self.expected_weight:
            shown = "missing" if self.configmap_weight is None else f"{self.configmap_weight:g}%"
            found.append(f"the ConfigMap gives {self.name} {shown}, expected {self.expected_weight:g}%")
        halt = _status(self.body).get("halt") or {}
        if self.cause is not None and not (halt.get("reason") == "BudgetExceeded"
                                           and str(halt.get("message", "")).startswith(f"{self.cause} ")):
            found.append(f"{self.name} was expected to stop on {self.cause}'s budget, not: "
                         f"{halt.get('reason')}: {halt.get('message')}")
        for metric in _metrics(self.body):
            if metric.get("name") in self.within_budget and metric.get("result") == "Failed":
                found.append(f"{self.name}'s {metric.get('name')} failed its budget, expected within it")
        return found


def warning_events(events: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The Warning events about the FeatureRollout `name`, oldest first."""
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name") == name and e.get("type") == "Warning"]
    return sorted(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def summary(outcomes: Sequence[Outcome]) -> tuple[list[str], list[str]]:
    """The summary's lines, and the problems (none: the demo went as it should)."""
    lines = ["summary:"]
    problems: list[str] = []
    for outcome in outcomes:
        took = outcome.duration()
        verdict = "as expected" if not outcome.problems() else f"NOT as expected ({outcome.expected_phase} expected)"
        lines.append(
            f"  {outcome.name:<14} {outcome.phase:<11} weight {outcome.weight:>3g}%"
            f"  took {'?' if took is None else f'{took:.0f}s'}  {verdict}"
        )
        cm = "missing" if outcome.configmap_weight is None else f"{outcome.configmap_weight:g}%"
        lines.append(f"    flag in the ConfigMap: {cm}")
        if outcome.phase != Phase.SUCCEEDED.value:
            reason = outcome.reason()
            if reason:
                lines.append(f"    reason: {reason}")
        for event in warning_events(outcome.events, outcome.name):
            lines.append(f"    Warning {event.get('reason')}: {event.get('message')}")
        problems.extend(outcome.problems())
    return lines, problems
