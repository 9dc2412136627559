"""The FeatureRollout status: phase, stage, metrics, conditions, halts, gates and handled requests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    Field,
)

from featurerollout.api.analysis import TemplateKind
from featurerollout.api.common import MAX_METRICS, MAX_NAME_LENGTH, Model
from featurerollout.api.spec import MAX_GATES, Target

# --- status ------------------------------------------------------------------------------------


class Phase(StrEnum):
    """Where a rollout is in its life. See the state diagram in README.md."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    WAITING = "Waiting"  # held at its weight by a closed gate (spec.gates); analysis goes on


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})

# The halt reason (and Warning Event, and target error) of a flag lowered outside the operator:
# never written back up (engine.py: check_drift; targets/base.py: check_not_lowered).
LOWERED_BY_HAND = "LoweredByHand"


def settled(status: Mapping[str, Any]) -> bool:
    """Is a stored status (the wire form) finished, so that a watcher can stop? A terminal phase,
    except a RolledBack that still has a weight: its 0% is being written (engine.rollback_intent)
    or retried, and users may still be exposed."""
    phase = status.get("phase")
    if phase == Phase.ROLLED_BACK:
        # A weight a person left by hand (halt LoweredByHand) is no rollback on its way.
        by_hand = (status.get("halt") or {}).get("reason") == LOWERED_BY_HAND
        return by_hand or float(status.get("currentWeight") or 0) <= 0
    return phase in TERMINAL_PHASES


class MetricResult(StrEnum):
    """The verdict of one evaluation of one metric."""

    PASSED = "Passed"
    FAILED = "Failed"
    NO_DATA = "NoData"
    ERROR = "Error"


class ArmStatus(Model):
    """One arm's counts over the stage, as a compare metric last measured them."""

    errors: float = Field(ge=0, description="Failed requests.")
    total: float = Field(ge=0, description="All requests.")


class TemplateUsed(Model):
    """The metric template an evaluation used: which one, and which generation of it."""

    kind: TemplateKind = Field(description="MetricTemplate or ClusterMetricTemplate.")
    name: str = Field(max_length=MAX_NAME_LENGTH, description="The template's name.")
    generation: int | None = Field(
        default=None, ge=0, description="Its metadata.generation when it was read; unset when it could not be read."
    )


class MetricStatus(Model):
    """The last evaluation of one metric."""

    name: str = Field(max_length=63, description="The metric's name.")
    value: float | None = Field(
        default=None,
        description="The last value, when there was one (for a compare metric, the treatment's "
        "error rate minus the control's, or their ratio).",
    )
    treatment: ArmStatus | None = Field(default=None, description="A compare metric's treatment counts.")
    control: ArmStatus | None = Field(default=None, description="A compare metric's control counts.")
    result: MetricResult = Field(description="Passed, Failed, NoData or Error.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed evaluations in a row.")
    consecutive_errors: int = Field(default=0, ge=0, description="Errored evaluations in a row.")
    message: str | None = Field(
        default=None, max_length=4096, description="Why, for NoData and Error; a compare metric's evidence."
    )
    evaluated_at: datetime | None = Field(default=None, description="When it was last evaluated.")
    template: TemplateUsed | None = Field(
        default=None, description="With templateRef: the template and generation this evaluation used."
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A Kubernetes API condition (metav1.Condition)."""

    type: str = Field(max_length=316, description="Progressing, Ready, Degraded or Analysis.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="A CamelCase word for machines.")
    message: str = Field(default="", max_length=32768, description="Details for people.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, ge=0, description="The spec it speaks of.")


class ControlAction(StrEnum):
    """A manual request from `featurerollout promote|pause|resume|abort|retry|approve`."""

    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    RETRY = "retry"
    APPROVE = "approve"


class RequestOutcome(StrEnum):
    """What became of a manual request: every request gets exactly one."""

    DONE = "Done"
    REFUSED = "Refused"
    IGNORED = "Ignored"


class HandledRequest(Model):
    """The last manual request the operator consumed, so that each is carried out exactly once,
    and what became of it, so that the CLI can tell the person who asked."""

    id: str = Field(max_length=128, description="The request's id, from the annotation.")
    action: ControlAction = Field(description="What was asked.")
    handled_at: datetime = Field(description="When the operator handled it.")
    outcome: RequestOutcome = Field(
        default=RequestOutcome.DONE,
        description="Done (carried out), Refused (could not be carried out: see reason; ask again once "
        "fixed) or Ignored (nothing to do in this phase: see reason).",
    )
    reason: str | None = Field(default=None, max_length=4096, description="Why it was refused or ignored.")


class TargetRef(Model):
    """The flag and target that the rollout's exposure lives in: the ones it last wrote."""

    flag: str = Field(max_length=253, description="The flag key it wrote.")
    target: Target = Field(description="The target it wrote, as spec.target named it then.")


class Halt(Model):
    """Why the rollout stopped without being told to continue: a rollback, an abort, a pause for
    a breached budget or a failing analysis, or a flag lowered by hand. Kept so that the reason
    outlives later conditions (a target error) and every later message can repeat it; cleared by
    `resume` (a pause) or `retry`."""

    reason: str = Field(max_length=1024, description="BudgetExceeded, NoData, AnalysisError, GateTimedOut, Aborted, "
                        "LoweredByHand (the flag was lowered outside the operator; never written back up) or, "
                        "in phase Failed, InvalidSpec.")
    message: str = Field(max_length=4096, description="The metric, its value and its budget; or who aborted.")
    at: datetime = Field(description="When it happened.")
    metric: str | None = Field(default=None, max_length=63, description="The metric that stopped it, if one did.")
    value: float | None = Field(default=None, description="That metric's value, when it had one.")
    budget: str | None = Field(default=None, max_length=256, description="That metric's budget, e.g. `<= 0.01`.")


class GateWait(Model):
    """The gate the rollout is held at now, and since when."""

    name: str = Field(max_length=63, description="The gate's name (spec.gates[].name).")
    kind: str = Field(max_length=16, description="approval or webhook.")
    before: str = Field(max_length=32, description="The point it guards: Start, Stage N or Success.")
    since: datetime = Field(description="When it began to hold the rollout (its timeout counts from here).")
    message: str | None = Field(default=None, max_length=4096, description="Why it is closed, for people.")
    checked_at: datetime | None = Field(default=None, description="When a webhook gate was last asked.")
    timed_out: bool = Field(default=False, description="It has held longer than its timeout (onTimeout: Hold).")


class OpenedGate(Model):
    """A gate that opened for a point; kept (the latest 16, after the rollout crossed that point too,
    and once it Succeeded) until a `retry`, so that an approval outlives any later `kubectl apply` of the
    manifest and the record shows who opened what."""

    name: str = Field(max_length=63, description="The gate's name.")
    before: str = Field(max_length=32, description="The point it opened: Start, Stage N or Success.")
    at: datetime = Field(description="When it opened.")
    request_id: str | None = Field(
        default=None, max_length=128, description="For an approval: the id of the `featurerollout approve` request."
    )
    message: str | None = Field(default=None, max_length=1024, description="How it opened.")


class FeatureRolloutStatus(Model):
    """What the operator observed and did. Written only by the operator."""

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Progressing, Waiting, Paused, "
                         "Succeeded, RolledBack or Failed.")
    current_stage: int = Field(default=0, ge=0, description="0-based index into spec.stages.")
    current_weight: float = Field(default=0, ge=0, le=100, description="The exposure the target holds now, "
                                  "in percent.")
    stage: str | None = Field(
        default=None, max_length=32, description="The current stage as N/M, for kubectl get."
    )
    stage_started_at: datetime | None = Field(
        default=None, description="When the target began to hold the current stage's weight."
    )
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation acted on.")
    message: str | None = Field(default=None, max_length=32768, description="What is happening, for people.")
    metrics: list[MetricStatus] = Field(
        default_factory=list, max_length=MAX_METRICS, description="The last evaluation of each metric."
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="Conditions.")
    manual_pause: bool = Field(
        default=False, description="Paused by `featurerollout pause` (released by resume), apart from "
        "spec.paused so that a GitOps tool never reverts it."
    )
    last_request: HandledRequest | None = Field(default=None, description="The last manual request handled.")
    last_analysis_at: datetime | None = Field(default=None, description="When the metrics were last evaluated.")
    started_at: datetime | None = Field(default=None, description="When the rollout first exposed the flag.")
    finished_at: datetime | None = Field(default=None, description="When it reached a terminal phase.")
    halt: Halt | None = Field(
        default=None, description="Why it rolled back, was aborted or paused itself; None while healthy."
    )
    spec_hash: str | None = Field(
        default=None, max_length=64,
        description="A hash of the spec without `paused`: the plan acted on. Toggling spec.paused bumps "
        "metadata.generation but is not a change of plan, so it does not restart the stage.",
    )
    target: TargetRef | None = Field(
        default=None, description="Where the exposure lives: the flag and target last written."
    )
    gate: GateWait | None = Field(default=None, description="The gate the rollout is held at now (phase Waiting).")
    opened_gates: list[OpenedGate] = Field(
        default_factory=list, max_length=MAX_GATES,
        description="Gates that opened (approvals with their request id), the latest 16, kept until a `retry`: "
        "after the point is crossed and at Succeeded too.",
    )
    shard_lease: str | None = Field(
        default=None, max_length=253,
        description="The Lease of the operator shard that acts on this rollout (its claim, see "
        "docs/high-availability.md); empty until a leader-elected operator first looks at it.",
    )

    @property
    def terminal(self) -> bool:
        """Succeeded, RolledBack or Failed: nothing moves until a person acts."""
        return self.phase in TERMINAL_PHASES

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if set."""
        return next((c for c in self.conditions if c.type == type_), None)
