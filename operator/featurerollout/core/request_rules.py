"""Rule 4: a manual request (promote, pause, resume, abort, approve, retry) and its one outcome.
"""

from __future__ import annotations

import featurerollout.core.gates as gates
from featurerollout.api import ControlAction, Halt, OpenedGate, Phase, RequestOutcome
from featurerollout.core.decision import ControlRequest
from featurerollout.core.facts import ACTIVE_PHASES, lowered_by_hand, rollback_pending, target_moved
from featurerollout.core.messages import TARGET_MOVED, cli, pct, stage_words
from featurerollout.core.stage_rules import StageRules


class RequestRules(StageRules):
    """Rule 4 on the decision under way: the manual requests."""

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
                        + (f"; run {cli('retry')} to roll it out again" if self.st.phase != Phase.SUCCEEDED else ""))
            return
        moved = target_moved(self.spec, self.st) and self.started
        if moved and action in (ControlAction.PROMOTE, ControlAction.RESUME):
            self.refuse(request, TARGET_MOVED.format(where=self.where()))
            return
        if action == ControlAction.PROMOTE:
            self.promote()
        elif action == ControlAction.PAUSE:
            self.update(manual_pause=True)
            where = self.where() if self.started else "before the start"
            self.event("Normal", "Paused", f"paused by {cli('pause')} {where}")
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
                self.event("Normal", "Resumed", f"{cli('resume')} handled, but {reason}")
            else:
                where = self.where() if self.started else "before the start"
                self.event("Normal", "Resumed", f"resumed by {cli('resume')} {where}")
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
            self.event("Normal", "Retried", f"retried by {cli('retry')}: starting again at "
                       f"{pct(self.spec.stages[0].weight)} ({stage_words(self.spec, 0)})")

    def abortable(self) -> bool:
        """May `abort` take exposure away? Any active rollout; a finished one whose flag is still
        above 0% (Succeeded, Failed, or left at a weight by hand), not one whose rollback is on its way."""
        if self.st.phase in ACTIVE_PHASES:
            return True
        return self.st.terminal and self.st.current_weight > 0 and not rollback_pending(self.st)

    def abort(self) -> None:
        weight = self.st.current_weight
        finished = f" after it {self.st.phase}" if self.st.terminal else ""
        message = f"aborted by {cli('abort')} {self.where()}{finished}; rolled back to 0%"
        self.update(phase=Phase.ROLLED_BACK, finished_at=self.now,
                    halt=Halt(reason="Aborted", message=message, at=self.now))
        self.apply(0)
        self.terminal_message = f"aborted by {cli('abort')} at {pct(weight)}{finished}; rolled back to 0%"
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
                            message=f"approved by {cli('approve')} (request {request.id})")
        self.update(opened_gates=gates.opened(self.st, record))
        self.event("Normal", "Approved", f"gate {gate.name!r} {gates.point_words(point)} approved by "
                   f"{cli('approve')} (request {request.id})")

    def promote(self) -> None:
        self.update(manual_pause=False, halt=None)
        if not self.started:
            self.event("Normal", "Promoted", f"promoted by {cli('promote')}: starting now")
            self.start()
            return
        index = self.st.current_stage
        if index >= len(self.spec.stages) - 1:
            self.event("Normal", "Promoted", f"promoted by {cli('promote')} {self.where()}: completing")
            self.succeed()
            return
        before = self.st.current_weight
        self.advance()
        self.event("Normal", "Promoted", f"promoted by {cli('promote')}: "
                   f"{stage_words(self.spec, self.st.current_stage)}: {pct(before)} -> "
                   f"{pct(self.st.current_weight)}")

