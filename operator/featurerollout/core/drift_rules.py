"""Rule 2b: what the target really holds. A raise is put back down; a lowering by hand is a
person's kill switch, never written back up; a step whose status write was lost is recorded once.
"""

from __future__ import annotations

from featurerollout.api import LOWERED_BY_HAND, ConditionStatus, ControlAction, Halt, Phase
from featurerollout.core.conditions import set_condition
from featurerollout.core.decision import ControlRequest
from featurerollout.core.facts import ACTIVE_PHASES, TARGET_IN_SYNC, rollback_pending
from featurerollout.core.messages import cli, pct, stage_words, stamp
from featurerollout.core.request_rules import RequestRules
from featurerollout.core.verdicts import analysis_passed


class DriftRules(RequestRules):
    """Rule 2b on the decision under way: what the target really holds."""

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
        held = "no entry" if self.observed.weight is None else pct(actual)
        if actual < expected:
            self.accept_lowering(actual, held)
            return
        message = (f"{self.observed.where} held {held} for flag {self.spec.flag!r}, more than the {pct(expected)} "
                   f"this rollout set: {pct(expected)} written back (exposure is raised only by the rollout's "
                   f"own promotions)")
        if self.st.phase in ACTIVE_PHASES:
            # The stage holds from when users really get its weight again, as after any write.
            self.update(stage_started_at=self.now)
            message += "; the stage's hold counts from now"
        self.apply(expected)
        self.update(conditions=set_condition(self.st.conditions, TARGET_IN_SYNC, ConditionStatus.TRUE,
                                             "DriftRepaired", f"at {stamp(self.now)} {message}", self.now,
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
        switched = "switched off by hand" if actual <= 0 else f"lowered by hand to {pct(actual)}"
        found = (f"{self.observed.where if self.observed else 'the target'} held {held} for flag {self.spec.flag!r}, "
                 f"less than the {pct(expected)} this rollout set: {switched} (outside the operator), so nothing "
                 f"is written back")
        if self.st.phase in ACTIVE_PHASES:
            stages = self.spec.stages
            at_or_below = [i for i, stage in enumerate(stages) if stage.weight <= actual]
            index = at_or_below[-1] if at_or_below else 0
            resume_at = max(actual, stages[index].weight)
            stage = stage_words(self.spec, index)
            message = (f"{found}; the rollout is paused at {pct(actual)} ({stage}): run "
                       f"{cli(ControlAction.RESUME)} to ramp again from {pct(resume_at)} ({stage}), or "
                       f"{cli(ControlAction.ABORT)} to end it at 0%")
            self.update(phase=Phase.PAUSED, current_weight=actual, current_stage=index, stage_started_at=self.now,
                        halt=Halt(reason=LOWERED_BY_HAND, message=message[:4096], at=self.now))
        else:
            message = (f"{found}; the rollout is now RolledBack at {pct(actual)}: run {cli(ControlAction.RETRY)} "
                       f"to roll it out again from the first stage")
            self.update(phase=Phase.ROLLED_BACK, current_weight=actual, finished_at=self.now,
                        halt=Halt(reason=LOWERED_BY_HAND, message=message[:4096], at=self.now))
            self.terminal_message = message
        self.lowered = True
        self.update(conditions=set_condition(self.st.conditions, TARGET_IN_SYNC, ConditionStatus.FALSE,
                                             LOWERED_BY_HAND, f"at {stamp(self.now)} {message}", self.now,
                                             self.generation))
        self.event("Warning", LOWERED_BY_HAND, message)
        self.log = f"flag {self.spec.flag!r} {switched}: {message}"

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
        if self.st.phase != Phase.PROGRESSING or not (self.hold_passed() and analysis_passed(self.spec, self.st)):
            return False
        last = self.st.current_stage >= len(self.spec.stages) - 1
        return held == (100 if last else self.spec.stages[self.st.current_stage + 1].weight)
