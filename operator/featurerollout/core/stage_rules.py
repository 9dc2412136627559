"""Rules 5 to 7: a rollout starts, holds, advances stage by stage, waits at gates, and succeeds.
"""

from __future__ import annotations

import featurerollout.core.gates as gates
from featurerollout.api import Gate, GateWait, OnGateTimeout, OpenedGate, Phase, TargetRef, format_duration
from featurerollout.core.analysis_rules import AnalysisRules
from featurerollout.core.facts import stage_hold
from featurerollout.core.measurement import analysis_interval
from featurerollout.core.messages import cli, pause_causes, pct, stage_words
from featurerollout.core.redact import shown_url
from featurerollout.core.verdicts import analysis_passed


class StageRules(AnalysisRules):
    """Rules 5 to 7 on the decision under way: start, hold, gates, advance, succeed."""

    # -- 5. start

    def paused_by(self) -> list[str]:
        return pause_causes(self.spec, self.st)

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
            self.event("Normal", "Started", f"started: the flag already exposed {pct(exposed)}, so the rollout "
                       f"adopts it: {stage_words(self.spec, index)} at {pct(weight)} (exposure is never lowered "
                       f"except by a rollback or {cli('abort')})")
        elif exposed > 0:
            self.event("Normal", "Started", f"started: {stage_words(self.spec, 0)} at {pct(weight)} (raised from "
                       f"the {pct(exposed)} the flag exposed)")
        else:
            self.event("Normal", "Started", f"started: {stage_words(self.spec, index)} at {pct(weight)}")

    # -- 6. progress

    def settle_phase(self) -> None:
        paused = bool(self.paused_by()) or self.st.halt is not None
        was_paused = self.st.phase == Phase.PAUSED
        self.update(phase=Phase.PAUSED if paused else Phase.PROGRESSING)
        explained = {e.reason for e in self.events} & {"Resumed", "Promoted", "Started", "SpecChanged"}
        if was_paused and not paused and not explained:
            self.event("Normal", "Resumed", f"resumed {self.where()}: nothing holds it any more")

    def hold_passed(self) -> bool:
        started = self.st.stage_started_at
        return started is None or self.now >= started + stage_hold(self.spec, self.st.current_stage)

    def progress(self) -> None:
        for _ in range(len(self.spec.stages) + 1):  # zero-length stages without analysis chain
            if not (self.hold_passed() and analysis_passed(self.spec, self.st)):
                return
            if not self.gates_open(gates.next_point(self.spec, self.st)):
                return
            if self.st.current_stage >= len(self.spec.stages) - 1:
                self.succeed()
                return
            before = self.st.current_weight
            self.advance()
            self.event("Normal", "StageAdvanced", f"{stage_words(self.spec, self.st.current_stage)}: "
                       f"{pct(before)} -> {pct(self.st.current_weight)}")

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
                interval = analysis_interval(self.spec)
                every = interval.text if interval is not None else format_duration(gates.DEFAULT_RETRY)
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
            message = f"run {cli('approve')} to open it"
            self.event("Normal", "WaitingForApproval", f"waiting for approval gate {gate.name!r} "
                       f"{gates.point_words(point)} {where}: run {cli('approve')}")
        else:
            url = shown_url(gate.webhook.url) if gate.webhook is not None else ""
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

