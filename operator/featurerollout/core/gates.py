"""Gates, as pure functions: which gate guards the next point of a rollout, whether it is open,
whether a webhook gate is due to be asked, whether it has timed out. No I/O and no clock: the
engine consults these from `decide()`, and the reconciler asks `webhook_due()` which webhook to
call (gates_webhook.py) before calling `decide()` with the answer.

The points a rollout crosses, in order: `Start` (the first exposure), `Stage 2` ... `Stage N`
(entering that stage, 1-based as `kubectl get fro` counts), `Success`. The gates at a point are
taken in spec order; the rollout crosses it once every one of them opened. A gate that opened stays
open for that point (`status.openedGates`, with the approval's request id) until a `retry`, so that
neither a later look nor a `kubectl apply` of the original manifest closes it again.

When a gate holds: only once nothing else holds the rollout (the stage's hold has passed and the
analysis passed at this weight; before Start, at once). From then on the rollout is `Waiting`,
`status.gate.since` says since when, and the gate's timeout counts from there. The stage clock is
not stopped: the stage advances as soon as both the hold has passed and the gate opened. A webhook
gate is asked once the wait begins and again every retry interval (the analysis interval) until it
answers 2xx. An approval can be given ahead of the wait, during the hold of the stage before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Gate,
    GateBefore,
    GateWait,
    OpenedGate,
    Phase,
    parse_duration,
)
from featurerollout.core.measurement import analysis_interval

START = "Start"
SUCCESS = "Success"
# How often a webhook gate is asked again without spec.analysis (with it: the analysis interval).
DEFAULT_RETRY = timedelta(seconds=10)
# The openings kept in status.openedGates (oldest dropped first).
MAX_OPENED = 16


@dataclass(frozen=True)
class GateCheck:
    """What a webhook gate answered when the edge asked it at this look."""

    name: str
    opened: bool  # a 2xx
    message: str  # what it answered, or why it could not be asked; never a secret


def stage_point(number: int) -> str:
    """The point of entering stage `number` (1-based)."""
    return f"Stage {number}"


def next_point(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """The next point this rollout will cross: Start, Stage N or Success."""
    if status.started_at is None:
        return START
    if status.current_stage >= len(spec.stages) - 1:
        return SUCCESS
    return stage_point(status.current_stage + 2)


def point_words(point: str) -> str:
    """`before the first exposure`, `before stage 3`, `before success`."""
    if point == START:
        return "before the first exposure"
    if point == SUCCESS:
        return "before success"
    return f"before {point.lower()}"


def guards(gate: Gate, point: str) -> bool:
    """Does the gate guard this point?"""
    if gate.before == GateBefore.START:
        return point == START
    if gate.before == GateBefore.SUCCESS:
        return point == SUCCESS
    if gate.before == GateBefore.STAGE:
        return gate.stage is not None and point == stage_point(gate.stage)
    return point.startswith("Stage ")  # EveryStage


def gates_at(spec: FeatureRolloutSpec, point: str) -> list[Gate]:
    """The gates guarding a point, in spec order."""
    return [gate for gate in spec.gates or [] if guards(gate, point)]


def opening(status: FeatureRolloutStatus, gate: Gate, point: str) -> OpenedGate | None:
    """The record of this gate having opened for this point, if it did."""
    return next((o for o in status.opened_gates if o.name == gate.name and o.before == point), None)


def blocking(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, point: str) -> Gate | None:
    """The first gate at the point that has not opened; None: the point may be crossed."""
    return next((g for g in gates_at(spec, point) if opening(status, g, point) is None), None)


def approvable(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> Gate | None:
    """The approval gate that `featurerollout approve` opens now: the first not yet opened approval
    gate at the next point (whether the rollout already waits at it or is still in the hold)."""
    point = next_point(spec, status)
    return next(
        (g for g in gates_at(spec, point) if g.approval is not None and opening(status, g, point) is None), None
    )


def nothing_to_approve(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """Why an approval has nothing to open, for the Ignored outcome."""
    if not any(g.approval is not None for g in spec.gates or []):
        return "no approval gate is waiting: the rollout has no approval gates (spec.gates)"
    point = next_point(spec, status)
    waiting = [g for g in gates_at(spec, point) if g.approval is not None]
    if waiting:
        names = ", ".join(repr(g.name) for g in waiting)
        return f"no approval gate is waiting: {names} {point_words(point)} opened already"
    return f"no approval gate is waiting: none guards the next point ({point_words(point)})"


def retry_interval(spec: FeatureRolloutSpec) -> timedelta:
    """How often a closed webhook gate is asked again: the analysis interval (10 s without analysis)."""
    interval = analysis_interval(spec)
    return interval.every if interval is not None else DEFAULT_RETRY


def find(spec: FeatureRolloutSpec, name: str) -> Gate | None:
    """The gate of that name in the spec."""
    return next((g for g in spec.gates or [] if g.name == name), None)


def webhook_due(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> Gate | None:
    """The webhook gate the edge should ask before this look's decide(), if one is due: the rollout
    waits at it, and it was never asked in this wait or was asked a retry interval ago."""
    wait = status.gate
    if status.phase != Phase.WAITING or wait is None:
        return None
    gate = find(spec, wait.name)
    if gate is None or gate.webhook is None:
        return None
    if wait.checked_at is None or now >= wait.checked_at + retry_interval(spec):
        return gate
    return None


def timeout_at(gate: Gate, wait: GateWait) -> datetime | None:
    """When the gate's timeout runs out in this wait (None: it has none)."""
    return None if gate.timeout is None else wait.since + parse_duration(gate.timeout)


def timed_out(gate: Gate, wait: GateWait, now: datetime) -> bool:
    """Has the gate held the rollout longer than its timeout?"""
    end = timeout_at(gate, wait)
    return end is not None and now >= end


def next_look(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> datetime | None:
    """When a waiting rollout must be looked at again for its gate: the next ask of a webhook gate,
    or the timeout (None: only a change, such as an approval, can open it)."""
    wait = status.gate
    if status.phase != Phase.WAITING or wait is None:
        return None
    gate = find(spec, wait.name)
    if gate is None:
        return now
    moments: list[datetime] = []
    if gate.webhook is not None:
        moments.append(now if wait.checked_at is None else max(now, wait.checked_at + retry_interval(spec)))
    end = timeout_at(gate, wait)
    if end is not None and not wait.timed_out:
        moments.append(max(now, end))
    return min(moments) if moments else None


def opened(status: FeatureRolloutStatus, record: OpenedGate) -> list[OpenedGate]:
    """status.openedGates with one more record, the oldest dropped past MAX_OPENED."""
    kept = [o for o in status.opened_gates if not (o.name == record.name and o.before == record.before)]
    return [*kept, record][-MAX_OPENED:]
