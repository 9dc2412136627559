"""What people read: the words of the status message, the conditions, the Events' phrases the
rules share. Worked out from the spec and status alone (never from the clock), so that a look
with nothing new renders the same words and writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import featurerollout.core.gates as gates
from featurerollout.api import (
    Analysis,
    Condition,
    ConditionStatus,
    ControlAction,
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    GateWait,
    Metric,
    MetricResult,
    MetricStatus,
    OnNoData,
    Phase,
)
from featurerollout.core.conditions import ANALYSIS, DEGRADED, PROGRESSING, READY, remove_condition, set_condition
from featurerollout.core.facts import ACTIVE_PHASES, stage_hold, target_moved
from featurerollout.core.verdicts import analysis_passed, fresh, passes, sampling


def pct(weight: float) -> str:
    """A weight as people read it: `25%`, `0.5%` (the engine's messages and the CLI's views)."""
    return f"{weight:g}%"


def stage_words(spec: FeatureRolloutSpec, index: int) -> str:
    total = len(spec.stages)
    return f"stage {min(index, total - 1) + 1}/{total}"


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def cli(action: ControlAction | str) -> str:
    return f"`featurerollout {action}`"


def breach_words(metric: Metric, value: float, evidence: str | None = None) -> tuple[str, str]:
    """(long, short) words for a value outside its budget: `exceeds its budget <= 0.01`, `> 0.01`."""
    if metric.compare is not None:  # a compare metric's evidence says it all
        return f"failed its comparison: {evidence or metric.budget()}", f"worse than control ({metric.budget()})"
    if metric.max is not None and value > metric.max:
        return f"{value:g} exceeds its budget {metric.budget()}", f"{value:g} > {metric.max:g}"
    bound = metric.min if metric.min is not None else 0.0
    return f"{value:g} is below its budget {metric.budget()}", f"{value:g} < {bound:g}"


def breach_brief(metric: Metric, value: float) -> str:
    """A breach in a few words, as the CLI's views show it: `0.12 > 0.05`, `0.8 < 0.9`."""
    return breach_words(metric, value)[1]



SPEC_NOTE = "; since then the spec changed: "
TARGET_MOVED = ("spec.flag or spec.target changed while the rollout is active {where}: its exposure lives in the "
                 "flag and target it wrote (status.target), which would stay exposed. Put them back, or run "
                 f"{cli('abort')} (0% on the old target) and then {cli('retry')} (starts on the new one)")
PENDING_NOTE = "; but the target has not taken 0% yet"


def metric_words(analysis: Analysis, metric: Metric, latest: MetricStatus | None,
                  status: FeatureRolloutStatus) -> str:
    name = metric.name
    if latest is None or not fresh(status, latest):
        return f"{name} awaiting evaluation"
    if metric.compare is not None and latest.result in (MetricResult.PASSED, MetricResult.NO_DATA):
        if sampling(latest):
            return f"{name} below the minimum sample (holding)"
        if latest.result == MetricResult.PASSED:
            return f"{name} no harm seen ({metric.budget()})" if latest.value is not None else f"{name} passed"
    if latest.result == MetricResult.PASSED and latest.value is not None:
        return f"{name} {latest.value:g} {metric.budget()}"
    if latest.result == MetricResult.FAILED and latest.value is not None:
        _, brief = breach_words(metric, latest.value)
        return (f"{name} {brief} (failure {latest.consecutive_failures}, "
                f"{metric.failure_limit} tolerated)")
    if latest.result == MetricResult.NO_DATA:
        policy = {OnNoData.HOLD: "holding", OnNoData.IGNORE: "ignored",
                  OnNoData.ROLLBACK: f"failure {latest.consecutive_failures}, "
                                     f"{metric.failure_limit} tolerated"}[analysis.on_no_data]
        return f"{name} no data ({policy})"
    return (f"{name} error {latest.consecutive_errors} of {analysis.consecutive_error_limit} tolerated: "
            f"{latest.message}")


def metrics_words(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    if spec.analysis is None:
        return ""
    known = {m.name: m for m in status.metrics}
    analysis = spec.analysis
    return ", ".join(metric_words(analysis, m, known.get(m.name), status) for m in analysis.metrics)


def paused_message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    if status.started_at is None:
        causes = " and ".join(pause_causes(spec, status)) or "a request"
        if status.current_weight > 0:
            return (f"paused before the start by {causes}: the flag already exposes {pct(status.current_weight)}, "
                    "left as it is; the rollout adopts it when it starts")
        return f"paused before the start by {causes}: nothing exposed yet"
    if status.halt is not None:
        return status.halt.message
    causes = " and ".join(pause_causes(spec, status))
    where = f"at {pct(status.current_weight)} ({stage_words(spec, status.current_stage)})"
    return f"paused by {causes} {where}"


def pause_causes(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> list[str]:
    causes = []
    if spec.paused:
        causes.append("spec.paused")
    if status.manual_pause:
        causes.append(cli("pause"))
    if status.started_at is not None and status.phase in ACTIVE_PHASES and target_moved(spec, status):
        causes.append("a change of spec.flag or spec.target (see the Degraded condition)")
    return causes


def status_message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """One line for people, from the status alone (never from the clock, so it does not churn)."""
    metrics = metrics_words(spec, status)
    if status.phase == Phase.PENDING:
        return "pending: the rollout starts at the next reconciliation"
    if status.phase == Phase.PAUSED:
        message = paused_message(spec, status)
        if status.started_at is not None and metrics and status.halt is None:
            message += f": {metrics}"
        resumed = status.last_request is not None and status.last_request.action == ControlAction.RESUME
        if spec.paused and resumed and not status.manual_pause:
            message += (f"; {cli('resume')} does not lift spec.paused: set spec.paused to false where the "
                        "spec is kept (Git)")
        return message
    if status.phase == Phase.WAITING and status.gate is not None:
        return waiting_message(spec, status, status.gate, metrics)
    where = f"{stage_words(spec, status.current_stage)} at {pct(status.current_weight)}"
    parts = [where + (f": {metrics}" if metrics else "")]
    started = status.stage_started_at
    hold = stage_hold(spec, status.current_stage)
    if started is not None and hold > timedelta(0):
        parts.append(f"holds at least until {stamp(started + hold)}")
    if spec.analysis is not None and not analysis_passed(spec, status):
        parts.append("holds until every metric passes at this weight")
    return "; ".join(parts)


def waiting_message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, wait: GateWait, metrics: str) -> str:
    """`stage 2/4 at 25%: waiting for approval gate 'ok-50' before stage 3 since ...: run ...; metrics`."""
    gate = f"{wait.kind} gate {wait.name!r} {gates.point_words(wait.before)} since {stamp(wait.since)}"
    why = f": {wait.message}" if wait.message else ""
    late = "; past its timeout (onTimeout: Hold), still holding" if wait.timed_out else ""
    if status.started_at is None:
        exposed = (f"the flag already exposes {pct(status.current_weight)}, left as it is"
                   if status.current_weight > 0 else "nothing exposed")
        return f"waiting for {gate} ({exposed}){why}{late}"
    where = f"{stage_words(spec, status.current_stage)} at {pct(status.current_weight)}"
    return f"{where}: waiting for {gate}{why}{late}" + (f"; {metrics}" if metrics else "")


def default_terminal_message(status: FeatureRolloutStatus) -> str:
    if status.phase == Phase.SUCCEEDED:
        return "succeeded: the flag is at 100%"
    if status.halt is not None:
        return status.halt.message
    return f"{status.phase}"


def conditions_for(spec: FeatureRolloutSpec | None, status: FeatureRolloutStatus, now: datetime,
                generation: int) -> list[Condition]:
    """Progressing, Ready, Degraded (and Analysis with spec.analysis), consistent with the phase."""
    true, false, unknown = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
    message = status.message or ""
    halt = status.halt
    phase = status.phase
    progressing: tuple[ConditionStatus, str]
    if phase == Phase.PENDING:
        progressing = (unknown, "Pending")
    elif phase == Phase.PROGRESSING:
        progressing = (true, "RollingOut")
    elif phase == Phase.PAUSED:
        progressing = (false, "Paused")
    elif phase == Phase.WAITING:
        kind = status.gate.kind if status.gate is not None else "webhook"
        progressing = (unknown, "WaitingForApproval" if kind == "approval" else "WaitingForGate")
    elif phase == Phase.SUCCEEDED:
        progressing = (false, "Succeeded")
    else:
        progressing = (false, halt.reason if halt is not None else str(phase))
    conditions = set_condition(status.conditions, PROGRESSING, *progressing, message, now, generation)
    ready = (true, "Succeeded") if phase == Phase.SUCCEEDED else (false, str(phase))
    conditions = set_condition(conditions, READY, *ready, message, now, generation)
    if halt is not None and phase != Phase.SUCCEEDED:
        conditions = set_condition(conditions, DEGRADED, true, halt.reason, halt.message, now, generation)
    elif spec is not None and phase in ACTIVE_PHASES and status.started_at is not None and target_moved(spec, status):
        where = f"at {pct(status.current_weight)} ({stage_words(spec, status.current_stage)})"
        conditions = set_condition(conditions, DEGRADED, true, "TargetChanged", TARGET_MOVED.format(where=where),
                                   now, generation)
    elif phase == Phase.FAILED:
        conditions = set_condition(conditions, DEGRADED, true, "Failed", message, now, generation)
    else:
        conditions = set_condition(conditions, DEGRADED, false, "AsExpected", "", now, generation)
    if spec is None or spec.analysis is None:
        return remove_condition(conditions, ANALYSIS)
    return set_condition(conditions, ANALYSIS, *analysis_condition(spec.analysis, status), now, generation)


def analysis_condition(analysis: Analysis, status: FeatureRolloutStatus) -> tuple[ConditionStatus, str, str]:
    known = {m.name: m for m in status.metrics}
    latest = [known[m.name] for m in analysis.metrics if m.name in known]
    if not latest:
        return ConditionStatus.UNKNOWN, "Pending", "no evaluation yet"
    for result, reason in ((MetricResult.FAILED, "Failed"), (MetricResult.ERROR, "Error")):
        bad = [m for m in latest if m.result == result]
        if bad:
            return ConditionStatus.FALSE, reason, "; ".join(f"{m.name}: {m.message}" for m in bad)
    no_data = [m for m in latest if m.result == MetricResult.NO_DATA and not passes(analysis, m)]
    if no_data:
        return ConditionStatus.FALSE, "NoData", "; ".join(f"{m.name}: {m.message}" for m in no_data)
    if len(latest) < len(analysis.metrics):
        return ConditionStatus.UNKNOWN, "Pending", "not every metric has been evaluated yet"
    words = ", ".join(
        f"{m.name} {m.value:g}" if m.value is not None
        else f"{m.name}: {m.message}" if m.result == MetricResult.PASSED and m.message
        else f"{m.name} no data (ignored)"
        for m in latest
    )
    return ConditionStatus.TRUE, "Passed", words
