"""Every decision the operator takes, as pure functions: (spec, status, now, measurements, request)
-> the next status, the actions to apply, and when to look again.

No I/O and no clock: the handler reads the object into `api` models, measures when
`analysis_due()` says so, calls `decide()`, applies the `SetWeight` through the target, gives
what became of the write to `settle()`, writes the status it gets back and emits the Events. Calling
`decide()` again with nothing new returns an equal status and no actions, so the handler writes
nothing.

The rules, in the order `decide()` applies them:

1. A manual request whose id is `status.lastRequest.id` was handled already and is ignored. Every
   other request gets exactly one outcome in `status.lastRequest`: Done, Refused (with a reason:
   also from settle() and cannot_proceed(), so a request the target could not carry out is
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

The rules live by reason: drift_rules, request_rules, stage_rules, analysis_rules (the classes of one
decision under way, work.Work); verdicts (a measurement's verdict); messages (what people read);
facts (what a status says); decision (the interface, re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import featurerollout.core.gates as gates
from featurerollout.api import (
    LOWERED_BY_HAND,
    ConditionStatus,
    ControlAction,
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Halt,
    HandledRequest,
    Phase,
    RequestOutcome,
    TemplateUsed,
)
from featurerollout.core.conditions import DEGRADED, find_condition, set_condition
from featurerollout.core.decision import Action, ControlRequest, Decision, EmitEvent, Observed, SetWeight
from featurerollout.core.drift_rules import DriftRules
from featurerollout.core.facts import (
    ACTIVE_PHASES,
    TARGET_IN_SYNC,
    TARGET_REASONS,
    analysis_due,
    lowered_by_hand,
    next_check,
    plan_changed,
    plan_hash,
    rollback_pending,
)
from featurerollout.core.measurement import Measurement
from featurerollout.core.messages import (
    PENDING_NOTE,
    SPEC_NOTE,
    cli,
    conditions_for,
    default_terminal_message,
    paused_message,
    pct,
    stage_words,
    stamp,
    status_message,
)
from featurerollout.core.verdicts import record_templates

__all__ = [
    "TARGET_REASONS",
    "Action",
    "ControlRequest",
    "Decision",
    "EmitEvent",
    "Observed",
    "SetWeight",
    "WriteOutcome",
    "analysis_due",
    "cannot_proceed",
    "decide",
    "next_check",
    "plan_hash",
    "rollback_intent",
    "rollback_pending",
    "settle",
]

TARGET_RETRY_MIN = timedelta(seconds=5)
TARGET_RETRY_MAX = timedelta(seconds=60)
_PAUSE_REASONS = frozenset({"Paused", "AnalysisFailing", "AnalysisError", "SpecChanged", "Resumed", LOWERED_BY_HAND})


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
    templates: Mapping[str, TemplateUsed | None] | None = None,
) -> Decision:
    """The next status, the actions that get there, and when to call again. See the module doc.

    `observed` is what the target holds now (read by the handler at this look; None: not read).
    `gate_checks`: what the webhook gate that `gates.webhook_due()` named answered at this look.
    `plan` is the spec as written when `spec` has its metric templates resolved (metrics/templates.py):
    the plan is hashed from it, so that editing a template is not a change of plan.
    `templates`: which template (and generation) each metric measured at this look used; recorded
    on the evaluations this look made (verdicts.record_templates).
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
    decision = work.finish(status)
    if templates is None:
        return decision
    return replace(decision, status=record_templates(decision.status, templates, now))


# --- after the target write ----------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOutcome:
    """What the target did with a look's write (or its read), for settle()."""

    # The target took the decision's SetWeight: its write returned at this moment.
    held_at: datetime | None = None
    # The target was not written (it refused, could not be read, or holds the flag for another live
    # rollout): the target's reason (TARGET_REASONS) and its words.
    refused: str | None = None
    message: str = ""

    @classmethod
    def applied(cls, at: datetime) -> WriteOutcome:
        return cls(held_at=at)

    @classmethod
    def failed(cls, reason: str, message: str) -> WriteOutcome:
        return cls(refused=reason, message=message)


def settle(
    spec: FeatureRolloutSpec,
    given: FeatureRolloutStatus,
    decision: Decision | None,
    outcome: WriteOutcome,
    *,
    generation: int,
    now: datetime,
    request: ControlRequest | None = None,
) -> Decision:
    """The decision as the target left it: the one step between the target write and the status.

    `given` is the status decide() was given; `decision` what it returned (None: the look stopped
    before deciding, at a flag another live rollout drives); `now` the instant it decided at.
    - Applied: a stage this decision started holds from `outcome.held_at`, the moment the write
      returned, when users really began to get its weight; its words and the next look are worked
      out again from that moment (_held_from).
    - Refused, for a rollback's (or an abort's) 0%: the rollback stands, its 0% pending and retried
      (_rollback_not_applied).
    - Refused otherwise: `given` is kept, with the target's reason on Degraded, and a request of
      this look refused (_target_failed).
    - Nothing written (`WriteOutcome()`): the decision as it is.
    """
    if outcome.refused is not None:
        write = next((a for a in decision.actions if isinstance(a, SetWeight)), None) if decision else None
        if decision is not None and write is not None and write.weight == 0 and \
                decision.status.phase == Phase.ROLLED_BACK:
            # A rollback stands even when the target refuses its 0%: it is retried.
            return _rollback_not_applied(decision, given, generation=generation, now=now, reason=outcome.refused,
                                         message=outcome.message)
        return _target_failed(given, generation=generation, now=now, reason=outcome.refused,
                              message=outcome.message, request=request)
    assert decision is not None, "settle() without a decision is for a refusal only"
    if outcome.held_at is not None and decision.status.stage_started_at == now:
        return _held_from(spec, decision, outcome.held_at, generation)
    return decision


def _held_from(spec: FeatureRolloutSpec, decision: Decision, held_at: datetime, generation: int) -> Decision:
    """The decision, with the stage it started timed from `held_at`: the moment the target's write
    returned, when users really began to get the new weight. The message and conditions that
    speak of the stage's end are worked out again from that moment, so that the next look, which
    renders them from the stored status, finds them unchanged and writes nothing."""
    status = decision.status.model_copy(update={"stage_started_at": held_at})
    if not status.terminal:
        status = status.model_copy(update={"message": status_message(spec, status)})
    status = status.model_copy(update={"conditions": conditions_for(spec, status, held_at, generation)})
    return replace(decision, status=status, next_check=next_check(spec, status, held_at))


def _refused(status: FeatureRolloutStatus, request: ControlRequest | None, now: datetime,
             reason: str) -> tuple[FeatureRolloutStatus, tuple[Action, ...]]:
    """`status` with `request` recorded as refused (once), and the event that says so."""
    if request is None or (status.last_request is not None and status.last_request.id == request.id):
        return status, ()
    handled = HandledRequest(id=request.id, action=request.action, handled_at=now,
                             outcome=RequestOutcome.REFUSED, reason=reason[:4096])
    event = EmitEvent("Warning", "RequestRefused", f"{cli(request.action)} refused: {reason}")
    return status.model_copy(update={"last_request": handled}), (event,)


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
    failed = failed.model_copy(update={"conditions": conditions_for(spec, failed, now, generation)})
    failed, refusal = _refused(failed, request, now, f"the rollout cannot proceed: {message}")
    actions: tuple[Action, ...] = (() if already else (EmitEvent("Warning", reason, message),)) + refusal
    return Decision(failed, actions, None, None if already else f"failed ({reason}): {message}")


def _target_failed(
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


def _rollback_not_applied(
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
    base = (decision.status.message or "rolled back").split(PENDING_NOTE)[0]
    pending = (f"{base}{PENDING_NOTE} ({reason}: {message}): users may still be exposed at {pct(exposed)} "
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
    `currentWeight` still what users have, as settle() records a 0% the target refused. A process killed
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
    base = (after.message or "rolled back").split(PENDING_NOTE)[0]
    return after.model_copy(update={
        "current_weight": given.current_weight,
        "message": f"{base}{PENDING_NOTE}: writing it now; users may still be exposed at "
                   f"{pct(given.current_weight)} until it does",
    })


class _Work(DriftRules):
    # -- 2. spec changes

    def spec_changed(self) -> None:
        generation = self.generation
        if self.st.terminal:
            base = (self.st.message or default_terminal_message(self.st)).split(SPEC_NOTE)[0]
            advice = (
                f"run {cli(ControlAction.RETRY)} to roll it out"
                if self.st.phase != Phase.SUCCEEDED
                else "a finished rollout does not start again"
            )
            note = f"{SPEC_NOTE}generation {generation} is not rolled out: {advice}"
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
        moved = "" if weight == previous else f" (raised from {pct(previous)} to the first stage)"
        self.event("Normal", "SpecChanged", f"spec changed (generation {generation}): continuing "
                   f"{self.where()}{moved}; its duration counts from now and the analysis starts afresh")


    # -- the end

    def finish_pending_rollback(self, given: FeatureRolloutStatus) -> None:
        """A RolledBack rollout whose target still holds a weight (settle(): a 0% the target refused):
        send 0% again; the rollback's Event, held back until the target takes it, goes with it."""
        if self.weight is not None or self.st.phase != Phase.ROLLED_BACK or not rollback_pending(given):
            return
        self.apply(0)
        base = (given.message or "").split(PENDING_NOTE)[0]
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
                f"at {stamp(self.now)} the rollout took its flag back after it had been lowered by hand "
                f"({self.st.phase} at {pct(self.st.current_weight)})", self.now, self.generation))
        before, after = given.phase, self.st.phase
        reasons = {e.reason for e in self.events}
        if after == Phase.PAUSED and before != Phase.PAUSED and not reasons & _PAUSE_REASONS:
            self.event("Normal", "Paused", paused_message(self.spec, self.st))

        if self.st.terminal:
            message = self.terminal_message or self.st.message or default_terminal_message(self.st)
        else:
            message = status_message(self.spec, self.st)
        stage = stage_words(self.spec, self.st.current_stage).removeprefix("stage ") if self.st.started_at else None
        self.update(message=message, observed_generation=self.generation, stage=stage,
                    spec_hash=plan_hash(self.plan))
        self.update(conditions=conditions_for(self.spec, self.st, self.now, self.generation))

        actions: list[Action] = []
        if self.weight is not None:
            actions.append(SetWeight(self.weight))
        actions.extend(self.events)
        return Decision(self.st, tuple(actions), next_check(self.spec, self.st, self.now), self.log)

