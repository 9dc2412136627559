"""Every decision the operator takes, as pure functions: (spec, status, now, measurements, request)
-> the next status, the actions to apply, and when to look again.

No I/O and no clock: the handler reads the object into `api` models, measures when
`analysis_due()` says so, calls `decide()`, applies the `SetWeight` through the target (or calls
`target_failed()` if it could not), writes the status it gets back and emits the Events. Calling
`decide()` again with nothing new returns an equal status and no actions, so the handler writes
nothing.

The rules, in the order `decide()` applies them:

1. A manual request whose id is `status.lastRequest.id` was handled already and is ignored. Every
   other request gets exactly one outcome in `status.lastRequest`: Done, Refused (with a reason:
   also from target_failed() and cannot_proceed(), so a request the target could not carry out is
   never left to fire later) or Ignored (with a reason: nothing to do in this phase).
2. Spec changes. When the plan changes (`plan_hash()`: the spec without `paused`, so toggling
   spec.paused is a pause, not a change; a status without `specHash` compares generations):
   - on a rollout in progress (Progressing or Paused) the exposure is kept: the weight never
     decreases except to 0 by a rollback or an abort. The rollout continues from the highest stage
     whose weight is at or below the current weight (or from the first stage, raised to its weight,
     if the current weight is below it); that stage's duration counts from the change, the metric
     results and their counters start afresh (the queries may have changed), and the current
     weight is written again (the target or the flag key may have changed). Event `SpecChanged`.
   - on a finished rollout (Succeeded, RolledBack, Failed) nothing moves: exposing users again
     after a rollback takes a person (`featurerollout retry`), and the status message says so.
   A change of spec.flag or spec.target while in progress is refused: the exposure lives in
   `status.target`, where the SetWeights keep going, the rollout holds (Paused, Degraded
   TargetChanged), and promote/resume are refused until the target is put back, or abort + retry.
2b. Drift: with `observed` (what the target holds, read by the handler), a rollout that wrote the
   target and finds MORE there than it set writes its own weight back (Warning TargetDrift,
   condition TargetInSync DriftRepaired). Finding LESS (a lower weight, 0%, DISABLED, no entry) is
   a person's kill switch, never written back up: an active rollout pauses at that weight (halt
   LoweredByHand; `resume` ramps again from there, `abort` ends it at 0%), a finished one becomes
   RolledBack at it (halt LoweredByHand; `retry` rolls it out again); Warning LoweredByHand,
   TargetInSync False. A rollout that starts over an existing exposure adopts it (see `start`).
3. Measurements (given only when `analysis_due()` was true) update `status.metrics`. A value
   outside [min, max] fails; more than `failureLimit` failures in a row roll back to 0% (or,
   with `rollback.automatic: false`, pause and wait for a person); no data holds, fails or passes
   as `onNoData` says; an error never promotes, and more than `consecutiveErrorLimit` errors in a
   row apply `onError`.
4. The request: promote, pause, resume, abort, retry.
5. A new rollout starts at the first stage, unless paused (then it waits at 0%).
6. A rollout in progress is Paused while `spec.paused`, `status.manualPause` or a halt (a budget
   breach without automatic rollback, analysis errors with `onError: Pause`) holds it; pausing
   stops promotion only: the weight holds, the stage clock runs, analysis and rollback continue.
   Otherwise it advances once the stage has held for its duration and, with analysis, every
   metric's latest evaluation taken after the stage began passed. At the last stage that
   completes the rollout: Succeeded.
7. Gates (spec.gates, gates.py): before crossing a point (the start, a stage, success) every gate
   at it must have opened; otherwise the rollout is Waiting at its weight (status.gate), its
   webhook gate asked through the edge (`gate_checks`), its timeout applied. Analysis and rollback
   (3) come first, so a gate never stands in their way; the stage clock keeps running.

Phases (events in brackets):

    Pending --[Started]--> Progressing --[StageAdvanced]--> Progressing --[Succeeded]--> Succeeded
       |                    |      ^
       | paused at creation |      | resume / spec.paused false / promote  [Resumed, Promoted]
       v                    v      |
     Paused (0%, not started)     Paused  (pause, spec.paused; budget breach without automatic
                                           rollback [AnalysisFailing]; errors with onError: Pause
                                           [AnalysisError])
    Progressing | Paused --budget breach, NoData under Rollback, errors under onError: Rollback
                           [RolledBack]; abort [Aborted]--> RolledBack (0%)
    Progressing | Waiting | Paused --flag lowered by hand [LoweredByHand]--> Paused (at that weight)
    Succeeded | Failed | RolledBack above 0% --abort [Aborted]--> RolledBack (0%)
    Succeeded --flag lowered by hand [LoweredByHand]--> RolledBack (at that weight; nothing written)
    RolledBack | Failed --retry [Retried, Started]--> Progressing (first stage)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import featurerollout.core.gates as gates
from featurerollout.api import (
    LOWERED_BY_HAND,
    Analysis,
    Condition,
    ConditionStatus,
    ControlAction,
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Gate,
    GateWait,
    Halt,
    HandledRequest,
    Metric,
    MetricResult,
    MetricStatus,
    OnError,
    OnGateTimeout,
    OnNoData,
    OpenedGate,
    Phase,
    RequestOutcome,
    TargetRef,
    format_duration,
)
from featurerollout.core.conditions import (
    ANALYSIS,
    DEGRADED,
    PROGRESSING,
    READY,
    find_condition,
    remove_condition,
    set_condition,
)
from featurerollout.core.guardrail import compare_status, stages_with_control
from featurerollout.core.measurement import Measurement, MeasurementKind

__all__ = [
    "Action",
    "ControlRequest",
    "Decision",
    "EmitEvent",
    "Observed",
    "SetWeight",
    "analysis_due",
    "breach_brief",
    "cannot_proceed",
    "decide",
    "held_from",
    "next_check",
    "plan_hash",
    "rollback_intent",
    "rollback_not_applied",
    "rollback_pending",
    "target_failed",
]

# Reasons a target reports through target_failed(); while one is on Degraded, decide() writes the
# current weight again so that the condition clears only once the target really takes a write.
# (targets/httproute.py and targets/webhook.py list theirs in REASONS; a test keeps them in here.)
TARGET_REASONS = frozenset({
    "TargetError", "InvalidDocument", "TargetNotFound", "TargetConflict", "FlagOwnedElsewhere",
    "RuleNotFound", "BackendNotFound", "BackendNotService",  # httpRoute
    "WebhookUnreachable", "WebhookFailed", "WebhookRejected", "SecretNotFound", "InvalidSecret",  # webhook
})
# The condition that records the last drift found (and put right) on the target.
TARGET_IN_SYNC = "TargetInSync"
TARGET_RETRY_MIN = timedelta(seconds=5)
TARGET_RETRY_MAX = timedelta(seconds=60)

# Waiting: held at a closed gate (gates.py); analysis, rollback and spec changes go on as in Progressing.
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING})


# --- the interface -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetWeight:
    """The target must expose this percentage now."""

    weight: float


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the FeatureRollout."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = SetWeight | EmitEvent


@dataclass(frozen=True)
class Observed:
    """What the target held for the flag when the handler read it at this look (None: no entry),
    and where that is, for messages (`HTTPRoute shop/checkout rule 0`)."""

    weight: float | None
    where: str = "the target"


@dataclass(frozen=True)
class ControlRequest:
    """A manual request, parsed by the handler from the annotation featurerollout.io/request."""

    id: str
    action: ControlAction


@dataclass(frozen=True)
class Decision:
    """The next status (assuming the actions succeed), the actions, and when to look again."""

    status: FeatureRolloutStatus
    actions: tuple[Action, ...]  # SetWeight first (at most one), then events
    next_check: datetime | None  # call decide() again at the latest then; None: only on a change
    log: str | None = None  # one line for the operator's log when something notable happened


# --- words -------------------------------------------------------------------------------------


def _pct(weight: float) -> str:
    return f"{weight:g}%"


def _stage(spec: FeatureRolloutSpec, index: int) -> str:
    total = len(spec.stages)
    return f"stage {min(index, total - 1) + 1}/{total}"


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _cli(action: ControlAction | str) -> str:
    return f"`featurerollout {action}`"


def _breach_words(metric: Metric, value: float, evidence: str | None = None) -> tuple[str, str]:
    """(long, short) words for a value outside its budget: `exceeds its budget <= 0.01`, `> 0.01`."""
    if metric.compare is not None:  # a compare metric's evidence says it all
        return f"failed its comparison: {evidence or metric.budget()}", f"worse than control ({metric.budget()})"
    if metric.max is not None and value > metric.max:
        return f"{value:g} exceeds its budget {metric.budget()}", f"{value:g} > {metric.max:g}"
    bound = metric.min if metric.min is not None else 0.0
    return f"{value:g} is below its budget {metric.budget()}", f"{value:g} < {bound:g}"


def breach_brief(metric: Metric, value: float) -> str:
    """A breach in a few words, as the CLI's views show it: `0.12 > 0.05`, `0.8 < 0.9`."""
    return _breach_words(metric, value)[1]


def _outside(metric: Metric, value: float) -> bool:
    return (metric.max is not None and value > metric.max) or (metric.min is not None and value < metric.min)


# --- the public functions ----------------------------------------------------------------------


def analysis_due(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> bool:
    """Should the handler measure every metric before calling decide()?

    True with spec.analysis set, on a started rollout that is Progressing or Paused (a pause stops
    promotion only: analysis and automatic rollback keep protecting users), once an interval has
    passed since the last analysis.
    """
    if spec.analysis is None or status.phase not in ACTIVE_PHASES or status.started_at is None:
        return False
    return status.last_analysis_at is None or now >= status.last_analysis_at + spec.analysis.every


def next_check(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> datetime | None:
    """When decide() should run again at the latest: the stage's end or the next analysis,
    whichever comes first; None when only a change can move the rollout (finished, or waiting)."""
    if status.terminal:
        return None
    if status.phase == Phase.PENDING:
        return now
    if status.phase == Phase.WAITING:
        # At a gate: its next ask or its timeout, and the analysis, which never stops for a gate.
        moments = [m for m in (gates.next_look(spec, status, now),) if m is not None]
        if spec.analysis is not None and status.started_at is not None:
            due = now if status.last_analysis_at is None else status.last_analysis_at + spec.analysis.every
            moments.append(max(due, now))
        return min(moments) if moments else None
    if status.started_at is None:  # paused before the start: waits for a person or a spec change
        return None
    candidates: list[datetime] = []
    if spec.analysis is not None:
        due = now if status.last_analysis_at is None else status.last_analysis_at + spec.analysis.every
        candidates.append(max(due, now))
    if status.phase == Phase.PROGRESSING and status.stage_started_at is not None:
        end = status.stage_started_at + _stage_hold(spec, status.current_stage)
        if end > now:
            candidates.append(end)
    return min(candidates) if candidates else None


def decide(
    spec: FeatureRolloutSpec,
    status: FeatureRolloutStatus,
    *,
    generation: int,
    now: datetime,
    measurements: Mapping[str, Measurement] | None = None,
    request: ControlRequest | None = None,
    observed: Observed | None = None,
    gate_checks: Mapping[str, gates.GateCheck] | None = None,
    plan: FeatureRolloutSpec | None = None,
) -> Decision:
    """The next status, the actions that get there, and when to call again. See the module doc.

    `observed` is what the target holds now (read by the handler at this look; None: not read).
    `gate_checks`: what the webhook gate that `gates.webhook_due()` named answered at this look.
    `plan` is the spec as written when `spec` has its metric templates resolved (metrics/templates.py):
    the plan is hashed from it, so that editing a template is not a change of plan.
    """
    work = _Work(spec, status, generation, now, observed, gate_checks)
    work.plan = plan if plan is not None else spec
    if request is not None and status.last_request is not None and status.last_request.id == request.id:
        request = None
    # Drift first: a flag lowered by hand is on record before a spec change re-writes the weight,
    # which would otherwise write the old exposure over the person's switch-off.
    work.check_drift(request)
    if plan_changed(work.plan, status, generation):
        work.spec_changed()
    if measurements and spec.analysis is not None and work.started and work.st.phase in ACTIVE_PHASES:
        work.analyse(spec.analysis, measurements)
    if request is not None:
        work.handle(request)
    if not work.st.terminal and not work.started:
        work.start_unless_paused()
    if work.started and work.st.phase in ACTIVE_PHASES:
        work.settle_phase()
        if work.st.phase == Phase.PROGRESSING:
            work.progress()
    work.finish_pending_rollback(status)
    work.rewrite_after_target_error(status)
    return work.finish(status)


def plan_hash(spec: FeatureRolloutSpec) -> str:
    """A hash of the spec without `paused` and `notifications`: the rollout's plan. Defaults are left out, so that a
    later version of the API adding a defaulted field does not look like a change of plan."""
    # Who is told about the rollout is not part of its plan: editing receivers restarts nothing.
    plan = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude={"paused", "notifications"})
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:32]


def plan_changed(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, generation: int) -> bool:
    """Did the plan change since the status was written? Toggling spec.paused bumps the generation
    but is no change of plan (a pause keeps the stage clock and the analysis). A status written
    before specHash existed falls back to comparing generations."""
    if status.spec_hash is not None:
        return status.spec_hash != plan_hash(spec)
    return status.observed_generation is not None and status.observed_generation != generation


def target_moved(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> bool:
    """Does the spec name another flag or target than the one the exposure lives in?"""
    ref = status.target
    return ref is not None and (ref.flag != spec.flag or ref.target != spec.target)


def _refused(status: FeatureRolloutStatus, request: ControlRequest | None, now: datetime,
             reason: str) -> tuple[FeatureRolloutStatus, tuple[Action, ...]]:
    """`status` with `request` recorded as refused (once), and the event that says so."""
    if request is None or (status.last_request is not None and status.last_request.id == request.id):
        return status, ()
    handled = HandledRequest(id=request.id, action=request.action, handled_at=now,
                             outcome=RequestOutcome.REFUSED, reason=reason[:4096])
    event = EmitEvent("Warning", "RequestRefused", f"{_cli(request.action)} refused: {reason}")
    return status.model_copy(update={"last_request": handled}), (event,)


def held_from(spec: FeatureRolloutSpec, decision: Decision, held_at: datetime, generation: int) -> Decision:
    """The decision, with the stage it started timed from `held_at`: the moment the target's write
    returned, when users really began to get the new weight. The message and conditions that
    speak of the stage's end are worked out again from that moment, so that the next look, which
    renders them from the stored status, finds them unchanged and writes nothing."""
    status = decision.status.model_copy(update={"stage_started_at": held_at})
    if not status.terminal:
        status = status.model_copy(update={"message": _message(spec, status)})
    status = status.model_copy(update={"conditions": _conditions(spec, status, held_at, generation)})
    return replace(decision, status=status, next_check=next_check(spec, status, held_at))


def cannot_proceed(
    spec: FeatureRolloutSpec | None,
    status: FeatureRolloutStatus,
    *,
    generation: int,
    now: datetime,
    reason: str,
    message: str,
    request: ControlRequest | None = None,
) -> Decision:
    """The rollout cannot be carried out as written (a spec the API should have refused): phase
    Failed, with the reason on Degraded, until a person fixes the spec and runs `featurerollout
    retry`. The weight is left as it is: nothing here says the feature hurts, so nothing is taken
    from users. One Warning event, not one per look."""
    already = status.phase == Phase.FAILED and status.halt is not None and status.halt.message == message
    halt = status.halt if already and status.halt is not None else Halt(reason=reason, message=message, at=now)
    failed = status.model_copy(
        update={
            "phase": Phase.FAILED,
            "halt": halt,
            "message": f"failed: {message}",
            "observed_generation": generation,
            "finished_at": status.finished_at if already else now,
        }
    )
    if spec is not None:
        failed = failed.model_copy(update={"spec_hash": plan_hash(spec)})
    failed = failed.model_copy(update={"conditions": _conditions(spec, failed, now, generation)})
    failed, refusal = _refused(failed, request, now, f"the rollout cannot proceed: {message}")
    actions: tuple[Action, ...] = (() if already else (EmitEvent("Warning", reason, message),)) + refusal
    return Decision(failed, actions, None, None if already else f"failed ({reason}): {message}")


def target_failed(
    status: FeatureRolloutStatus, *, generation: int, now: datetime, reason: str, message: str,
    request: ControlRequest | None = None,
) -> Decision:
    """The target could not apply the SetWeight: keep what the target really holds, say so.

    Pass the status that decide() was given, not the one it returned: nothing the target did not
    do is recorded (weight, stage, phase, handled request, generation), so the next decide() tries
    again. Degraded=True with `reason`; a Warning event only when that is news, so a persistent
    error does not raise one every tick. Retries after 5 s, backing off to 60 s. A manual request
    in this look is recorded as refused, with the target's error as the reason: it is never left
    filed to fire later by itself.
    """
    previous = find_condition(status.conditions, DEGRADED)
    ongoing = previous is not None and previous.status == ConditionStatus.TRUE and previous.reason == reason
    conditions = set_condition(
        status.conditions, DEGRADED, ConditionStatus.TRUE, reason, message, now, generation
    )
    delay = TARGET_RETRY_MIN
    if ongoing and previous is not None:
        delay = min(TARGET_RETRY_MAX, max(TARGET_RETRY_MIN, (now - previous.last_transition_time) / 2))
    actions: tuple[Action, ...] = () if ongoing else (EmitEvent("Warning", reason, message),)
    updated = status.model_copy(update={"conditions": conditions})
    if updated.phase == Phase.PENDING or (updated.started_at is None and not updated.terminal):
        # Nothing started yet: say why, instead of "starts at the next reconciliation".
        updated = updated.model_copy(update={"message": f"waiting: {message}"})
    updated, refusal = _refused(updated, request, now, f"the target could not be written: {message}")
    return Decision(
        status=updated,
        actions=actions + refusal,
        next_check=now + delay,
        log=None if ongoing else f"target error ({reason}): {message}",
    )


_PENDING_NOTE = "; but the target has not taken 0% yet"


def rollback_not_applied(
    decision: Decision, given: FeatureRolloutStatus, *, generation: int, now: datetime, reason: str, message: str
) -> Decision:
    """The target could not apply a rollback's (or an abort's) 0%. The rollback stands, it is not
    forgotten if the metric recovers meanwhile: phase RolledBack with its halt and its handled
    request. But `currentWeight` stays what the target still holds, the message and Degraded say
    that users may still be exposed until the target takes 0%, and decide() sends 0% again, backing
    off from 5 s to 60 s, until it does; only then is the RolledBack (or Aborted) Event posted.

    `given` is the status that decide() was given; `decision` what it returned."""
    previous = find_condition(given.conditions, DEGRADED)
    ongoing = previous is not None and previous.status == ConditionStatus.TRUE and previous.reason == reason
    exposed = given.current_weight
    base = (decision.status.message or "rolled back").split(_PENDING_NOTE)[0]
    pending = (f"{base}{_PENDING_NOTE} ({reason}: {message}): users may still be exposed at {_pct(exposed)} "
               "until it does; retrying")
    status = decision.status.model_copy(update={"current_weight": exposed, "message": pending})
    # Degraded carries the target's reason while the 0% is pending; its transition time is kept
    # while the same error goes on, so that the retries back off.
    conditions = set_condition(status.conditions, DEGRADED, ConditionStatus.TRUE, reason, pending, now, generation)
    if ongoing and previous is not None:
        conditions = [c.model_copy(update={"last_transition_time": previous.last_transition_time})
                      if c.type == DEGRADED else c for c in conditions]
    delay = TARGET_RETRY_MIN
    if ongoing and previous is not None:
        delay = min(TARGET_RETRY_MAX, max(TARGET_RETRY_MIN, (now - previous.last_transition_time) / 2))
    actions: tuple[Action, ...] = () if ongoing else (EmitEvent("Warning", reason, pending),)
    return Decision(
        status=status.model_copy(update={"conditions": conditions}),
        actions=actions,
        next_check=now + delay,
        log=None if ongoing else pending,
    )


def rollback_intent(given: FeatureRolloutStatus, decision: Decision) -> FeatureRolloutStatus | None:
    """The status to put on record BEFORE the target write of a decision that takes exposure away
    (an automatic rollback, a gate's, an abort): phase RolledBack with its halt, but
    `currentWeight` still what users have, as rollback_not_applied() records it. A process killed
    (or out of its Lease) between the two writes then leaves a pending rollback that whoever looks
    next completes (finish_pending_rollback() sends 0% whatever the target holds), not a
    Progressing status beside a 0% target, which would read as drift and could expose users again
    if the next measurement passed. None: the decision takes nothing away."""
    after = decision.status
    # A RolledBack rollout still exposed only by a person's partial lowering can be aborted to 0%:
    # that abort is recorded first too. Any other RolledBack has its rollback on record already.
    recorded = given.phase == Phase.ROLLED_BACK and not lowered_by_hand(given)
    if recorded or given.current_weight <= 0 or after.phase != Phase.ROLLED_BACK:
        return None
    if not any(isinstance(a, SetWeight) and a.weight == 0 for a in decision.actions):
        return None
    base = (after.message or "rolled back").split(_PENDING_NOTE)[0]
    return after.model_copy(update={
        "current_weight": given.current_weight,
        "message": f"{base}{_PENDING_NOTE}: writing it now; users may still be exposed at "
                   f"{_pct(given.current_weight)} until it does",
    })


def lowered_by_hand(status: FeatureRolloutStatus) -> bool:
    """Is the rollout held where a person lowered its flag outside the operator (halt LoweredByHand)?"""
    return status.halt is not None and status.halt.reason == LOWERED_BY_HAND


def rollback_pending(status: FeatureRolloutStatus) -> bool:
    """A rollback (or abort) on record whose 0% the target has not taken yet: RolledBack with a
    weight, unless that weight is one a person left by hand (nothing of ours to send)."""
    return status.phase == Phase.ROLLED_BACK and status.current_weight > 0 and not lowered_by_hand(status)


# --- the work of one decision ------------------------------------------------------------------


def _stage_hold(spec: FeatureRolloutSpec, index: int) -> timedelta:
    return spec.stages[min(index, len(spec.stages) - 1)].hold


class _Work:
    """One decision under way: the status so far, the weight to apply, the events, the log line."""

    def __init__(
        self, spec: FeatureRolloutSpec, status: FeatureRolloutStatus, generation: int, now: datetime,
        observed: Observed | None = None, gate_checks: Mapping[str, gates.GateCheck] | None = None,
    ) -> None:
        self.spec = spec
        self.plan = spec  # the spec as written (decide() sets it when spec has templates resolved)
        self.observed = observed
        self.gate_checks = dict(gate_checks or {})
        self.st = status
        self.generation = generation
        self.now = now
        self.weight: float | None = None
        self.events: list[EmitEvent] = []
        self.log: str | None = None
        self.terminal_message: str | None = None
        self.lowered = False  # this look found the flag lowered by hand: nothing is written

    # -- helpers

    def update(self, **changes: Any) -> None:
        self.st = self.st.model_copy(update=changes)

    @property
    def started(self) -> bool:
        return self.st.started_at is not None and self.st.phase != Phase.PENDING

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(EmitEvent(type_, reason, message))

    def where(self) -> str:
        return f"at {_pct(self.st.current_weight)} ({_stage(self.spec, self.st.current_stage)})"

    def apply(self, weight: float) -> None:
        self.weight = weight
        self.update(current_weight=weight)
        if not target_moved(self.spec, self.st):
            # The exposure now lives here; a later change of spec.target is refused while active.
            self.update(target=TargetRef(flag=self.spec.flag, target=self.spec.target))

    def record(self, request: ControlRequest, outcome: RequestOutcome = RequestOutcome.DONE,
               reason: str | None = None) -> None:
        self.update(last_request=HandledRequest(id=request.id, action=request.action, handled_at=self.now,
                                                outcome=outcome, reason=reason))

    def ignore(self, request: ControlRequest, reason: str) -> None:
        self.record(request, RequestOutcome.IGNORED, reason)
        self.event("Normal", "RequestIgnored", f"{_cli(request.action)} ignored: {reason}")

    def refuse(self, request: ControlRequest, reason: str) -> None:
        self.record(request, RequestOutcome.REFUSED, reason)
        self.event("Warning", "RequestRefused", f"{_cli(request.action)} refused: {reason}")

    # -- drift: what the target really holds

    def check_drift(self, request: ControlRequest | None = None) -> None:
        """Compare what the target holds with the weight this rollout set (someone edited it, the
        ConfigMap was re-created...). Only once this rollout wrote the target, and not while Failed
        or waiting to start; a write already due this look puts it right anyway.

        Exposure is raised only by a promotion the rules allow, so the two directions differ:
        - more than the rollout set is put back down (Warning TargetDrift, TargetInSync DriftRepaired);
        - less (a lower weight, 0%, DISABLED, the flag entry gone) is a person's kill switch and is
          never written back up: see lowered_by_hand()."""
        wrote = self.st.target is not None or self.st.started_at is not None  # (an older status has no target)
        if self.observed is None or self.weight is not None or not wrote:
            return
        if self.lost_record(request):
            return
        if self.st.phase not in (*ACTIVE_PHASES, Phase.SUCCEEDED, Phase.ROLLED_BACK):
            return
        if self.st.phase in ACTIVE_PHASES and self.st.started_at is None:
            # Waiting at a gate or paused before the start (a retry keeps status.target): nothing of
            # ours is exposed; the status follows what the target exposes, and start() adopts it.
            return
        if rollback_pending(self.st):
            # A rollback whose 0% the target has not taken yet: finish_pending_rollback() sends 0%,
            # whatever the target holds now. Never "put back" the exposure a rollback took away.
            return
        actual = self.observed.weight or 0.0
        expected = self.st.current_weight
        if abs(actual - expected) < 1e-9:
            return
        held = "no entry" if self.observed.weight is None else _pct(actual)
        if actual < expected:
            self.accept_lowering(actual, held)
            return
        message = (f"{self.observed.where} held {held} for flag {self.spec.flag!r}, more than the {_pct(expected)} "
                   f"this rollout set: {_pct(expected)} written back (exposure is raised only by the rollout's "
                   f"own promotions)")
        if self.st.phase in ACTIVE_PHASES:
            # The stage holds from when users really get its weight again, as after any write.
            self.update(stage_started_at=self.now)
            message += "; the stage's hold counts from now"
        self.apply(expected)
        self.update(conditions=set_condition(self.st.conditions, TARGET_IN_SYNC, ConditionStatus.TRUE,
                                             "DriftRepaired", f"at {_when(self.now)} {message}", self.now,
                                             self.generation))
        self.event("Warning", "TargetDrift", message)
        self.log = f"drift on flag {self.spec.flag!r}: {message}"

    def accept_lowering(self, actual: float, held: str) -> None:
        """The target holds less than this rollout set: someone switched the feature off (or down)
        outside the operator, the way flag users always have. The kill switch wins: nothing is
        written back, and the record takes the target's weight as the truth.

        - An active rollout pauses (halt LoweredByHand) at that weight, at the highest stage at or
          below it, rather than aborting: an abort would have to write 0% where the person may have
          left 10% on purpose, and pausing keeps analysis and automatic rollback at work while a
          person decides: `resume` ramps again from that stage, `abort` ends it at 0%.
        - A finished rollout (Succeeded, or an earlier lowering) is RolledBack, halt LoweredByHand,
          at that weight: `retry` rolls it out again from the first stage.
        The same for every target that reads back; a webhook cannot be read, so it is never re-sent."""
        expected = self.st.current_weight
        switched = "switched off by hand" if actual <= 0 else f"lowered by hand to {_pct(actual)}"
        found = (f"{self.observed.where if self.observed else 'the target'} held {held} for flag {self.spec.flag!r}, "
                 f"less than the {_pct(expected)} this rollout set: {switched} (outside the operator), so nothing "
                 f"is written back")
        if self.st.phase in ACTIVE_PHASES:
            stages = self.spec.stages
            at_or_below = [i for i, stage in enumerate(stages) if stage.weight <= actual]
            index = at_or_below[-1] if at_or_below else 0
            resume_at = max(actual, stages[index].weight)
            stage = _stage(self.spec, index)
            message = (f"{found}; the rollout is paused at {_pct(actual)} ({stage}): run "
                       f"{_cli(ControlAction.RESUME)} to ramp again from {_pct(resume_at)} ({stage}), or "
                       f"{_cli(ControlAction.ABORT)} to end it at 0%")
            self.update(phase=Phase.PAUSED, current_weight=actual, current_stage=index, stage_started_at=self.now,
                        halt=Halt(reason=LOWERED_BY_HAND, message=message[:4096], at=self.now))
        else:
            message = (f"{found}; the rollout is now RolledBack at {_pct(actual)}: run {_cli(ControlAction.RETRY)} "
                       f"to roll it out again from the first stage")
            self.update(phase=Phase.ROLLED_BACK, current_weight=actual, finished_at=self.now,
                        halt=Halt(reason=LOWERED_BY_HAND, message=message[:4096], at=self.now))
            self.terminal_message = message
        self.lowered = True
        self.update(conditions=set_condition(self.st.conditions, TARGET_IN_SYNC, ConditionStatus.FALSE,
                                             LOWERED_BY_HAND, f"at {_when(self.now)} {message}", self.now,
                                             self.generation))
        self.event("Warning", LOWERED_BY_HAND, message)
        self.log = f"flag {self.spec.flag!r} {switched}: {message}"

    # -- 2. spec changes

    def spec_changed(self) -> None:
        generation = self.generation
        if self.st.terminal:
            base = (self.st.message or _default_terminal_message(self.st)).split(_SPEC_NOTE)[0]
            advice = (
                f"run {_cli(ControlAction.RETRY)} to roll it out"
                if self.st.phase != Phase.SUCCEEDED
                else "a finished rollout does not start again"
            )
            note = f"{_SPEC_NOTE}generation {generation} is not rolled out: {advice}"
            self.terminal_message = base + note
            self.event("Normal", "SpecChanged", f"spec changed (generation {generation}) after the "
                       f"rollout {self.st.phase}: nothing moves; {advice}")
            return
        if not self.started:
            return
        stages = self.spec.stages
        at_or_below = [i for i, stage in enumerate(stages) if stage.weight <= self.st.current_weight]
        if at_or_below or lowered_by_hand(self.st):
            # A weight a person lowered by hand is kept even below the first stage: only `resume`
            # raises it again.
            index, weight = (at_or_below[-1] if at_or_below else 0), self.st.current_weight
        else:
            index, weight = 0, stages[0].weight
        previous = self.st.current_weight
        self.update(current_stage=index, stage_started_at=self.now, metrics=[], last_analysis_at=None)
        self.apply(weight)
        moved = "" if weight == previous else f" (raised from {_pct(previous)} to the first stage)"
        self.event("Normal", "SpecChanged", f"spec changed (generation {generation}): continuing "
                   f"{self.where()}{moved}; its duration counts from now and the analysis starts afresh")

    # -- 3. measurements

    def analyse(self, analysis: Analysis, measurements: Mapping[str, Measurement]) -> None:
        known = {m.name: m for m in self.st.metrics}
        metrics: list[MetricStatus] = []
        measured: list[tuple[Metric, MetricStatus]] = []
        for metric in analysis.metrics:
            previous = known.get(metric.name)
            measurement = measurements.get(metric.name)
            if measurement is None:
                if previous is not None:
                    metrics.append(previous)
                continue
            current = _evaluate(analysis, metric, previous, measurement, self.now,
                                weight=self.st.current_weight, stages=stages_with_control(self.spec))
            metrics.append(current)
            measured.append((metric, current))
        self.update(metrics=metrics, last_analysis_at=self.now)

        no_data_fails = analysis.on_no_data == OnNoData.ROLLBACK
        for metric, current in measured:  # budgets first: a breach outranks an error
            counts = current.result == MetricResult.FAILED or (
                current.result == MetricResult.NO_DATA and no_data_fails and not _sampling(current)
            )
            if counts and current.consecutive_failures > metric.failure_limit:
                self.breached(metric, current)
                return
        limit = analysis.consecutive_error_limit
        for metric, current in measured:
            if current.result == MetricResult.ERROR and current.consecutive_errors > limit:
                self.analysis_broken(analysis, metric, current)
                return
        for metric, current in measured:  # within the tolerance: say so, hold
            if current.result == MetricResult.FAILED and current.value is not None:
                words, _ = _breach_words(metric, current.value, current.message)
                self.event("Warning", "AnalysisFailing", f"{metric.name} {words} {self.where()}: failure "
                           f"{current.consecutive_failures} of {metric.failure_limit} tolerated; holding")
            elif current.result == MetricResult.ERROR and current.consecutive_errors == 1:
                self.event("Warning", "AnalysisError", f"{metric.name} could not be evaluated "
                           f"{self.where()}: {current.message}; holding")

    def breached(self, metric: Metric, current: MetricStatus) -> None:
        if current.result == MetricResult.NO_DATA:
            reason = "NoData"
            long = (f"{metric.name} had no data ({current.message}) {current.consecutive_failures} times "
                    f"in a row, more than its failureLimit {metric.failure_limit}, {self.where()}; "
                    f"onNoData is Rollback")
            short = f"{metric.name} had no data"
        else:
            reason = "BudgetExceeded"
            value = current.value if current.value is not None else float("nan")
            words, brief = _breach_words(metric, value, current.message)
            long = f"{metric.name} {words} {self.where()}"
            short = f"{metric.name} {brief}"
        # The metric, its value and its budget as fields too, for notifications (notify/).
        culprit = {"metric": metric.name, "value": current.value, "budget": metric.budget()}
        if self.spec.rollback.automatic:
            self.roll_back(reason, long, short, **culprit)
        else:
            self.halt(reason, long + f"; automatic rollback is off (rollback.automatic: false), so it "
                      f"holds {_pct(self.st.current_weight)}: run {_cli('abort')} to roll back or "
                      f"{_cli('resume')} to continue", "AnalysisFailing", **culprit)

    def analysis_broken(self, analysis: Analysis, metric: Metric, current: MetricStatus) -> None:
        long = (f"{metric.name} could not be evaluated {current.consecutive_errors} times in a row, "
                f"more than consecutiveErrorLimit {analysis.consecutive_error_limit}, {self.where()}: "
                f"{current.message}")
        culprit: dict[str, Any] = {"metric": metric.name, "budget": metric.budget()}
        if analysis.on_error == OnError.ROLLBACK:
            self.roll_back("AnalysisError", long + "; onError is Rollback",
                           f"{metric.name} could not be evaluated", **culprit)
        else:
            self.halt("AnalysisError", long + f"; onError is Pause, so it holds "
                      f"{_pct(self.st.current_weight)}: run {_cli('abort')} to roll back or "
                      f"{_cli('resume')} to continue", "AnalysisError", **culprit)

    def roll_back(self, reason: str, long: str, short: str, **culprit: Any) -> None:
        weight = self.st.current_weight
        message = f"{long}; rolled back to 0%"
        self.update(phase=Phase.ROLLED_BACK, finished_at=self.now, halt=Halt(reason=reason, message=message,
                                                                             at=self.now, **culprit))
        self.apply(0)
        self.terminal_message = f"rolled back: {short} at {_pct(weight)}"
        self.event("Warning", "RolledBack", message)
        self.log = f"rolled back flag {self.spec.flag!r} to 0%: {message}"

    def halt(self, reason: str, message: str, event_reason: str, **culprit: Any) -> None:
        if self.st.halt is not None:  # already held for a person: no new alarm
            return
        self.update(halt=Halt(reason=reason, message=message, at=self.now, **culprit), phase=Phase.PAUSED)
        self.event("Warning", event_reason, message)
        self.log = f"paused flag {self.spec.flag!r}: {message}"

    # -- 4. requests

    def handle(self, request: ControlRequest) -> None:
        """Every request gets exactly one outcome, recorded with its id: carried out (Done),
        refused with a reason (it could not be carried out now), or ignored with a reason
        (nothing to do in this phase). A refused request is not kept to fire later."""
        action = request.action
        self.record(request)
        if self.st.terminal and action == ControlAction.ABORT and self.abortable():
            self.abort()  # the kill switch works on a finished rollout too: its flag goes to 0%
            return
        if self.st.terminal and action != ControlAction.RETRY:
            at_zero = "; its flag is at 0% already" if action == ControlAction.ABORT else ""
            self.ignore(request, f"the rollout is {self.st.phase}{at_zero}"
                        + (f"; run {_cli('retry')} to roll it out again" if self.st.phase != Phase.SUCCEEDED else ""))
            return
        moved = target_moved(self.spec, self.st) and self.started
        if moved and action in (ControlAction.PROMOTE, ControlAction.RESUME):
            self.refuse(request, _TARGET_MOVED.format(where=self.where()))
            return
        if action == ControlAction.PROMOTE:
            self.promote()
        elif action == ControlAction.PAUSE:
            self.update(manual_pause=True)
            where = self.where() if self.started else "before the start"
            self.event("Normal", "Paused", f"paused by {_cli('pause')} {where}")
        elif action == ControlAction.RESUME:
            if not self.st.manual_pause and self.st.halt is None and not self.spec.paused:
                self.ignore(request, f"the rollout is {self.st.phase} and not paused")
                return
            by_hand = lowered_by_hand(self.st)
            self.update(manual_pause=False, halt=None)
            if by_hand and not self.spec.paused:
                self.ramp_again()
            if self.spec.paused:
                reason = "spec.paused is true and still holds the rollout: set spec.paused to false"
                self.record(request, RequestOutcome.DONE, reason)
                self.event("Normal", "Resumed", f"{_cli('resume')} handled, but {reason}")
            else:
                where = self.where() if self.started else "before the start"
                self.event("Normal", "Resumed", f"resumed by {_cli('resume')} {where}")
        elif action == ControlAction.ABORT:
            self.abort()
        elif action == ControlAction.APPROVE:
            self.approve(request)
        elif action == ControlAction.RETRY:
            if self.st.phase not in (Phase.ROLLED_BACK, Phase.FAILED):
                self.ignore(request, f"it restarts a RolledBack or Failed rollout, and this one is {self.st.phase}")
                return
            self.update(phase=Phase.PENDING, current_stage=0, stage_started_at=None, metrics=[],
                        last_analysis_at=None, manual_pause=False, halt=None, started_at=None,
                        finished_at=None, gate=None, opened_gates=[])
            self.event("Normal", "Retried", f"retried by {_cli('retry')}: starting again at "
                       f"{_pct(self.spec.stages[0].weight)} ({_stage(self.spec, 0)})")

    def abortable(self) -> bool:
        """May `abort` take exposure away? Any active rollout; a finished one whose flag is still
        above 0% (Succeeded, Failed, or left at a weight by hand), not one whose rollback is on its way."""
        if self.st.phase in ACTIVE_PHASES:
            return True
        return self.st.terminal and self.st.current_weight > 0 and not rollback_pending(self.st)

    def abort(self) -> None:
        weight = self.st.current_weight
        finished = f" after it {self.st.phase}" if self.st.terminal else ""
        message = f"aborted by {_cli('abort')} {self.where()}{finished}; rolled back to 0%"
        self.update(phase=Phase.ROLLED_BACK, finished_at=self.now,
                    halt=Halt(reason="Aborted", message=message, at=self.now))
        self.apply(0)
        self.terminal_message = f"aborted by {_cli('abort')} at {_pct(weight)}{finished}; rolled back to 0%"
        self.event("Warning", "Aborted", message)
        self.log = f"aborted flag {self.spec.flag!r}: {message}"

    def ramp_again(self) -> None:
        """`resume` after a lowering by hand: the stage starts over from now, at its own weight when
        the person left less (a raise a person asked for), never lower than what the flag holds."""
        index = self.st.current_stage
        weight = max(self.st.current_weight, self.spec.stages[index].weight)
        self.update(stage_started_at=self.now)
        if weight != self.st.current_weight:
            self.apply(weight)

    def approve(self, request: ControlRequest) -> None:
        """Open the approval gate at the next point: the one the rollout waits at, or, during the
        hold before it, the one it will reach (an approval ahead of time)."""
        gate = gates.approvable(self.spec, self.st)
        if gate is None:
            self.ignore(request, gates.nothing_to_approve(self.spec, self.st))
            return
        point = gates.next_point(self.spec, self.st)
        record = OpenedGate(name=gate.name, before=point, at=self.now, request_id=request.id,
                            message=f"approved by {_cli('approve')} (request {request.id})")
        self.update(opened_gates=gates.opened(self.st, record))
        self.event("Normal", "Approved", f"gate {gate.name!r} {gates.point_words(point)} approved by "
                   f"{_cli('approve')} (request {request.id})")

    def promote(self) -> None:
        self.update(manual_pause=False, halt=None)
        if not self.started:
            self.event("Normal", "Promoted", f"promoted by {_cli('promote')}: starting now")
            self.start()
            return
        index = self.st.current_stage
        if index >= len(self.spec.stages) - 1:
            self.event("Normal", "Promoted", f"promoted by {_cli('promote')} {self.where()}: completing")
            self.succeed()
            return
        before = self.st.current_weight
        self.advance()
        self.event("Normal", "Promoted", f"promoted by {_cli('promote')}: "
                   f"{_stage(self.spec, self.st.current_stage)}: {_pct(before)} -> "
                   f"{_pct(self.st.current_weight)}")

    # -- 5. start

    def paused_by(self) -> list[str]:
        return _causes(self.spec, self.st)

    def exposed(self) -> float:
        """What the target exposes before this rollout started (0 when not read): what this look
        wrote, if it wrote (a drift put down in the same look), else what was read."""
        if self.weight is not None:
            return self.weight
        return (self.observed.weight or 0.0) if self.observed is not None else 0.0

    def start_unless_paused(self) -> None:
        if self.paused_by():
            # Not started: nothing is written, and the status says what the target exposes.
            self.update(phase=Phase.PAUSED, current_stage=0, current_weight=self.exposed())
            return
        if not self.gates_open(gates.START):
            # A gate before the first exposure: nothing is written, as when paused before the start.
            if self.st.phase == Phase.WAITING:
                self.update(current_stage=0, current_weight=self.exposed())
            return
        self.start()

    def start(self) -> None:
        """Start at the first stage; or, when the flag is already exposed (a rollout deleted and
        created again, as a GitOps prune does), adopt that exposure as a spec change would: go on
        from the highest stage at or below it, never lowering it (only a rollback or an abort do)."""
        exposed = self.exposed()
        stages = self.spec.stages
        at_or_below = [i for i, stage in enumerate(stages) if stage.weight <= exposed]
        index, weight = (at_or_below[-1], exposed) if at_or_below else (0, stages[0].weight)
        self.update(phase=Phase.PROGRESSING, current_stage=index, stage_started_at=self.now,
                    started_at=self.now, finished_at=None, metrics=[], last_analysis_at=None,
                    target=TargetRef(flag=self.spec.flag, target=self.spec.target))  # a start moves the target
        self.apply(weight)
        if exposed > 0 and at_or_below:
            self.event("Normal", "Started", f"started: the flag already exposed {_pct(exposed)}, so the rollout "
                       f"adopts it: {_stage(self.spec, index)} at {_pct(weight)} (exposure is never lowered "
                       f"except by a rollback or {_cli('abort')})")
        elif exposed > 0:
            self.event("Normal", "Started", f"started: {_stage(self.spec, 0)} at {_pct(weight)} (raised from "
                       f"the {_pct(exposed)} the flag exposed)")
        else:
            self.event("Normal", "Started", f"started: {_stage(self.spec, index)} at {_pct(weight)}")

    # -- 6. progress

    def settle_phase(self) -> None:
        paused = bool(self.paused_by()) or self.st.halt is not None
        was_paused = self.st.phase == Phase.PAUSED
        self.update(phase=Phase.PAUSED if paused else Phase.PROGRESSING)
        explained = {e.reason for e in self.events} & {"Resumed", "Promoted", "Started", "SpecChanged"}
        if was_paused and not paused and not explained:
            self.event("Normal", "Resumed", f"resumed {self.where()}: nothing holds it any more")

    def lost_record(self, request: ControlRequest | None) -> bool:
        """Does the target hold what this very look is about to write: the next stage's weight when
        the stage is over, or 0% for an abort not yet handled? Then an earlier look wrote the
        target and its status write was lost (the process was killed, or lost its Lease, between
        the two writes). That is not drift: this look records the step, once, with its Event;
        putting the old weight back would take the step twice."""
        assert self.observed is not None
        held = self.observed.weight or 0.0
        if request is not None and request.action == ControlAction.ABORT and self.abortable():
            return held == 0
        if self.st.phase != Phase.PROGRESSING or not (self.hold_passed() and _analysis_passed(self.spec, self.st)):
            return False
        last = self.st.current_stage >= len(self.spec.stages) - 1
        return held == (100 if last else self.spec.stages[self.st.current_stage + 1].weight)

    def hold_passed(self) -> bool:
        started = self.st.stage_started_at
        return started is None or self.now >= started + _stage_hold(self.spec, self.st.current_stage)

    def progress(self) -> None:
        for _ in range(len(self.spec.stages) + 1):  # zero-length stages without analysis chain
            if not (self.hold_passed() and _analysis_passed(self.spec, self.st)):
                return
            if not self.gates_open(gates.next_point(self.spec, self.st)):
                return
            if self.st.current_stage >= len(self.spec.stages) - 1:
                self.succeed()
                return
            before = self.st.current_weight
            self.advance()
            self.event("Normal", "StageAdvanced", f"{_stage(self.spec, self.st.current_stage)}: "
                       f"{_pct(before)} -> {_pct(self.st.current_weight)}")

    def gates_open(self, point: str) -> bool:
        """May the rollout cross `point`? Otherwise it waits (phase Waiting, status.gate) at the first
        closed gate, asks a webhook gate through the edge, and applies a gate's timeout. Only called
        once nothing else holds the rollout, so the wait and its timeout count from then."""
        for _ in range(len(self.spec.gates or []) + 1):
            gate = gates.blocking(self.spec, self.st, point)
            if gate is None:
                return True
            wait = self.st.gate
            if wait is None or wait.name != gate.name or wait.before != point:
                wait = self.start_wait(gate, point)
            check = self.gate_checks.pop(gate.name, None)
            if check is not None and gate.webhook is not None:
                if check.opened:
                    record = OpenedGate(name=gate.name, before=point, at=self.now, message=check.message[:1024])
                    self.update(opened_gates=gates.opened(self.st, record), gate=None)
                    self.event("Normal", "GateOpened", f"gate {gate.name!r} {gates.point_words(point)} "
                               f"opened: {check.message}")
                    continue  # the next gate at this point, if any
                every = (self.spec.analysis.interval if self.spec.analysis is not None
                         else format_duration(gates.DEFAULT_RETRY))
                wait = wait.model_copy(update={"checked_at": self.now,
                                               "message": f"{check.message}; asking again every {every}"[:4096]})
            if gates.timed_out(gate, wait, self.now):
                words = (f"gate {gate.name!r} {gates.point_words(point)} has held the rollout longer than its "
                         f"timeout {gate.timeout} {self.where() if self.started else '(nothing exposed)'}")
                if gate.on_timeout == OnGateTimeout.ROLLBACK:
                    self.update(gate=None)
                    self.roll_back("GateTimedOut", words + "; onTimeout is Rollback",
                                   f"gate {gate.name!r} timed out")
                    return False
                if not wait.timed_out:
                    wait = wait.model_copy(update={"timed_out": True})
                    self.event("Warning", "GateTimedOut", words + "; onTimeout is Hold, so it keeps holding")
            self.update(gate=wait, phase=Phase.WAITING)
            return False
        return False

    def start_wait(self, gate: Gate, point: str) -> GateWait:
        where = self.where() if self.started else "(nothing exposed yet)"
        if gate.approval is not None:
            message = f"run {_cli('approve')} to open it"
            self.event("Normal", "WaitingForApproval", f"waiting for approval gate {gate.name!r} "
                       f"{gates.point_words(point)} {where}: run {_cli('approve')}")
        else:
            url = gate.webhook.url if gate.webhook is not None else ""
            message = f"asking POST {url}"
            self.event("Normal", "WaitingForGate", f"waiting for webhook gate {gate.name!r} "
                       f"{gates.point_words(point)} {where}: asking POST {url}")
        return GateWait(name=gate.name, kind=gate.kind, before=point, since=self.now, message=message)

    def advance(self) -> None:
        index = self.st.current_stage + 1
        self.update(current_stage=index, stage_started_at=self.now)
        self.apply(self.spec.stages[index].weight)

    def succeed(self) -> None:
        if self.st.current_weight != 100:
            self.apply(100)
        self.update(phase=Phase.SUCCEEDED, finished_at=self.now)
        self.terminal_message = f"succeeded: {self.spec.flag} is at 100%"
        self.event("Normal", "Succeeded", f"succeeded: {self.spec.flag} is at 100% after "
                   f"{len(self.spec.stages)} stages")

    # -- the end

    def finish_pending_rollback(self, given: FeatureRolloutStatus) -> None:
        """A RolledBack rollout whose target still holds a weight (see rollback_not_applied): send
        0% again; the rollback's Event, held back until the target takes it, goes with it."""
        if self.weight is not None or self.st.phase != Phase.ROLLED_BACK or not rollback_pending(given):
            return
        self.apply(0)
        base = (given.message or "").split(_PENDING_NOTE)[0]
        self.terminal_message = base or None
        halt = self.st.halt
        if halt is not None:
            self.event("Warning", "Aborted" if halt.reason == "Aborted" else "RolledBack", halt.message)
            self.log = f"the target now holds 0%: {halt.message}"

    def rewrite_after_target_error(self, given: FeatureRolloutStatus) -> None:
        degraded = find_condition(given.conditions, DEGRADED)
        if (
            self.weight is None
            and not self.lowered  # a person's lowering is never written over, not even to retry a write
            and degraded is not None
            and degraded.status == ConditionStatus.TRUE
            and degraded.reason in TARGET_REASONS
            and self.st.started_at is not None
        ):
            self.weight = self.st.current_weight

    def finish(self, given: FeatureRolloutStatus) -> Decision:
        if self.st.phase != Phase.WAITING and self.st.gate is not None:
            self.update(gate=None)  # a wait ends when anything else moves or holds the rollout
        synced = find_condition(self.st.conditions, TARGET_IN_SYNC)
        if (synced is not None and synced.status == ConditionStatus.FALSE and synced.reason == LOWERED_BY_HAND
                and not lowered_by_hand(self.st)):
            # A person took the rollout back (resume, retry, abort, promote) or a rollback did.
            self.update(conditions=set_condition(
                self.st.conditions, TARGET_IN_SYNC, ConditionStatus.TRUE, "TakenBack",
                f"at {_when(self.now)} the rollout took its flag back after it had been lowered by hand "
                f"({self.st.phase} at {_pct(self.st.current_weight)})", self.now, self.generation))
        before, after = given.phase, self.st.phase
        reasons = {e.reason for e in self.events}
        if after == Phase.PAUSED and before != Phase.PAUSED and not reasons & _PAUSE_REASONS:
            self.event("Normal", "Paused", _paused_message(self.spec, self.st))

        if self.st.terminal:
            message = self.terminal_message or self.st.message or _default_terminal_message(self.st)
        else:
            message = _message(self.spec, self.st)
        stage = _stage(self.spec, self.st.current_stage).removeprefix("stage ") if self.st.started_at else None
        self.update(message=message, observed_generation=self.generation, stage=stage,
                    spec_hash=plan_hash(self.plan))
        self.update(conditions=_conditions(self.spec, self.st, self.now, self.generation))

        actions: list[Action] = []
        if self.weight is not None:
            actions.append(SetWeight(self.weight))
        actions.extend(self.events)
        return Decision(self.st, tuple(actions), next_check(self.spec, self.st, self.now), self.log)


_SPEC_NOTE = "; since then the spec changed: "
_TARGET_MOVED = ("spec.flag or spec.target changed while the rollout is active {where}: its exposure lives in the "
                 "flag and target it wrote (status.target), which would stay exposed. Put them back, or run "
                 f"{_cli('abort')} (0% on the old target) and then {_cli('retry')} (starts on the new one)")
_PAUSE_REASONS = frozenset({"Paused", "AnalysisFailing", "AnalysisError", "SpecChanged", "Resumed", LOWERED_BY_HAND})


# --- verdicts ----------------------------------------------------------------------------------


def _evaluate(
    analysis: Analysis, metric: Metric, previous: MetricStatus | None, measurement: Measurement, now: datetime,
    *, weight: float = 0, stages: int = 1,
) -> MetricStatus:
    if metric.compare is not None and measurement.kind == MeasurementKind.VALUE:
        return compare_status(metric.name, metric.compare, previous, measurement, now, weight=weight, stages=stages)
    failures = previous.consecutive_failures if previous is not None else 0
    errors = previous.consecutive_errors if previous is not None else 0
    value: float | None = None
    message: str | None = None
    if measurement.kind == MeasurementKind.VALUE and measurement.value is not None:
        value = measurement.value
        if _outside(metric, value):
            result, failures, errors = MetricResult.FAILED, failures + 1, 0
            message = f"{value:g} is outside its budget {metric.budget()}"
        else:
            result, failures, errors = MetricResult.PASSED, 0, 0
    elif measurement.kind == MeasurementKind.ERROR:
        result, errors = MetricResult.ERROR, errors + 1
        message = measurement.detail or "the query failed"
    else:  # no data (or a VALUE without a number, which is no data too)
        result = MetricResult.NO_DATA
        message = measurement.detail or "the query returned no data"
        if analysis.on_no_data == OnNoData.ROLLBACK:
            failures, errors = failures + 1, 0
        elif analysis.on_no_data == OnNoData.IGNORE:
            failures, errors = 0, 0
    return MetricStatus(
        name=metric.name,
        value=value,
        result=result,
        consecutive_failures=failures,
        consecutive_errors=errors,
        message=message[:4096] if message else None,
        evaluated_at=now,
    )


def _sampling(status: MetricStatus) -> bool:
    """A compare metric below its minimum sample: NoData that always holds, whatever onNoData says."""
    return status.result == MetricResult.NO_DATA and status.treatment is not None


def _passes(analysis: Analysis, status: MetricStatus) -> bool:
    return status.result == MetricResult.PASSED or (
        status.result == MetricResult.NO_DATA and analysis.on_no_data == OnNoData.IGNORE and not _sampling(status)
    )


def _fresh(status: FeatureRolloutStatus, metric: MetricStatus) -> bool:
    """Evaluated at the current weight: strictly after the stage began. A measurement taken in the
    same decision that set the weight was taken at the weight before."""
    started = status.stage_started_at
    return metric.evaluated_at is not None and (started is None or metric.evaluated_at > started)


def _analysis_passed(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> bool:
    """Every metric's latest evaluation passed at the current weight (always true without analysis)."""
    if spec.analysis is None:
        return True
    known = {m.name: m for m in status.metrics}
    for metric in spec.analysis.metrics:
        latest = known.get(metric.name)
        if latest is None or not _fresh(status, latest) or not _passes(spec.analysis, latest):
            return False
    return True


# --- what people read --------------------------------------------------------------------------


def _metric_words(analysis: Analysis, metric: Metric, latest: MetricStatus | None,
                  status: FeatureRolloutStatus) -> str:
    name = metric.name
    if latest is None or not _fresh(status, latest):
        return f"{name} awaiting evaluation"
    if metric.compare is not None and latest.result in (MetricResult.PASSED, MetricResult.NO_DATA):
        if _sampling(latest):
            return f"{name} below the minimum sample (holding)"
        if latest.result == MetricResult.PASSED:
            return f"{name} no harm seen ({metric.budget()})" if latest.value is not None else f"{name} passed"
    if latest.result == MetricResult.PASSED and latest.value is not None:
        return f"{name} {latest.value:g} {metric.budget()}"
    if latest.result == MetricResult.FAILED and latest.value is not None:
        _, brief = _breach_words(metric, latest.value)
        return (f"{name} {brief} (failure {latest.consecutive_failures}, "
                f"{metric.failure_limit} tolerated)")
    if latest.result == MetricResult.NO_DATA:
        policy = {OnNoData.HOLD: "holding", OnNoData.IGNORE: "ignored",
                  OnNoData.ROLLBACK: f"failure {latest.consecutive_failures}, "
                                     f"{metric.failure_limit} tolerated"}[analysis.on_no_data]
        return f"{name} no data ({policy})"
    return (f"{name} error {latest.consecutive_errors} of {analysis.consecutive_error_limit} tolerated: "
            f"{latest.message}")


def _metrics_words(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    if spec.analysis is None:
        return ""
    known = {m.name: m for m in status.metrics}
    analysis = spec.analysis
    return ", ".join(_metric_words(analysis, m, known.get(m.name), status) for m in analysis.metrics)


def _paused_message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    if status.started_at is None:
        causes = " and ".join(_causes(spec, status)) or "a request"
        if status.current_weight > 0:
            return (f"paused before the start by {causes}: the flag already exposes {_pct(status.current_weight)}, "
                    "left as it is; the rollout adopts it when it starts")
        return f"paused before the start by {causes}: nothing exposed yet"
    if status.halt is not None:
        return status.halt.message
    causes = " and ".join(_causes(spec, status))
    where = f"at {_pct(status.current_weight)} ({_stage(spec, status.current_stage)})"
    return f"paused by {causes} {where}"


def _causes(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> list[str]:
    causes = []
    if spec.paused:
        causes.append("spec.paused")
    if status.manual_pause:
        causes.append(_cli("pause"))
    if status.started_at is not None and status.phase in ACTIVE_PHASES and target_moved(spec, status):
        causes.append("a change of spec.flag or spec.target (see the Degraded condition)")
    return causes


def _message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus) -> str:
    """One line for people, from the status alone (never from the clock, so it does not churn)."""
    metrics = _metrics_words(spec, status)
    if status.phase == Phase.PENDING:
        return "pending: the rollout starts at the next reconciliation"
    if status.phase == Phase.PAUSED:
        message = _paused_message(spec, status)
        if status.started_at is not None and metrics and status.halt is None:
            message += f": {metrics}"
        resumed = status.last_request is not None and status.last_request.action == ControlAction.RESUME
        if spec.paused and resumed and not status.manual_pause:
            message += (f"; {_cli('resume')} does not lift spec.paused: set spec.paused to false where the "
                        "spec is kept (Git)")
        return message
    if status.phase == Phase.WAITING and status.gate is not None:
        return _waiting_message(spec, status, status.gate, metrics)
    where = f"{_stage(spec, status.current_stage)} at {_pct(status.current_weight)}"
    parts = [where + (f": {metrics}" if metrics else "")]
    started = status.stage_started_at
    hold = _stage_hold(spec, status.current_stage)
    if started is not None and hold > timedelta(0):
        parts.append(f"holds at least until {_when(started + hold)}")
    if spec.analysis is not None and not _analysis_passed(spec, status):
        parts.append("holds until every metric passes at this weight")
    return "; ".join(parts)


def _waiting_message(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, wait: GateWait, metrics: str) -> str:
    """`stage 2/4 at 25%: waiting for approval gate 'ok-50' before stage 3 since ...: run ...; metrics`."""
    gate = f"{wait.kind} gate {wait.name!r} {gates.point_words(wait.before)} since {_when(wait.since)}"
    why = f": {wait.message}" if wait.message else ""
    late = "; past its timeout (onTimeout: Hold), still holding" if wait.timed_out else ""
    if status.started_at is None:
        exposed = (f"the flag already exposes {_pct(status.current_weight)}, left as it is"
                   if status.current_weight > 0 else "nothing exposed")
        return f"waiting for {gate} ({exposed}){why}{late}"
    where = f"{_stage(spec, status.current_stage)} at {_pct(status.current_weight)}"
    return f"{where}: waiting for {gate}{why}{late}" + (f"; {metrics}" if metrics else "")


def _default_terminal_message(status: FeatureRolloutStatus) -> str:
    if status.phase == Phase.SUCCEEDED:
        return "succeeded: the flag is at 100%"
    if status.halt is not None:
        return status.halt.message
    return f"{status.phase}"


def _conditions(spec: FeatureRolloutSpec | None, status: FeatureRolloutStatus, now: datetime,
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
        where = f"at {_pct(status.current_weight)} ({_stage(spec, status.current_stage)})"
        conditions = set_condition(conditions, DEGRADED, true, "TargetChanged", _TARGET_MOVED.format(where=where),
                                   now, generation)
    elif phase == Phase.FAILED:
        conditions = set_condition(conditions, DEGRADED, true, "Failed", message, now, generation)
    else:
        conditions = set_condition(conditions, DEGRADED, false, "AsExpected", "", now, generation)
    if spec is None or spec.analysis is None:
        return remove_condition(conditions, ANALYSIS)
    return set_condition(conditions, ANALYSIS, *_analysis_condition(spec.analysis, status), now, generation)


def _analysis_condition(analysis: Analysis, status: FeatureRolloutStatus) -> tuple[ConditionStatus, str, str]:
    known = {m.name: m for m in status.metrics}
    latest = [known[m.name] for m in analysis.metrics if m.name in known]
    if not latest:
        return ConditionStatus.UNKNOWN, "Pending", "no evaluation yet"
    for result, reason in ((MetricResult.FAILED, "Failed"), (MetricResult.ERROR, "Error")):
        bad = [m for m in latest if m.result == result]
        if bad:
            return ConditionStatus.FALSE, reason, "; ".join(f"{m.name}: {m.message}" for m in bad)
    no_data = [m for m in latest if m.result == MetricResult.NO_DATA and not _passes(analysis, m)]
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
