"""One decision under way (the engine's `decide()`): the status so far, the weight to write, the
Events, the log line; and the moves every rule may make (apply a weight, record a request, roll
back, halt).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import featurerollout.core.gates as gates
from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Halt,
    HandledRequest,
    Phase,
    RequestOutcome,
    TargetRef,
)
from featurerollout.core.decision import ControlRequest, EmitEvent, Observed
from featurerollout.core.facts import target_moved
from featurerollout.core.messages import cli, pct, stage_words


class Work:
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
        return f"at {pct(self.st.current_weight)} ({stage_words(self.spec, self.st.current_stage)})"

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
        self.event("Normal", "RequestIgnored", f"{cli(request.action)} ignored: {reason}")

    def refuse(self, request: ControlRequest, reason: str) -> None:
        self.record(request, RequestOutcome.REFUSED, reason)
        self.event("Warning", "RequestRefused", f"{cli(request.action)} refused: {reason}")

    # -- what every rule may do to the rollout

    def roll_back(self, reason: str, long: str, short: str, **culprit: Any) -> None:
        weight = self.st.current_weight
        message = f"{long}; rolled back to 0%"
        self.update(phase=Phase.ROLLED_BACK, finished_at=self.now, halt=Halt(reason=reason, message=message,
                                                                             at=self.now, **culprit))
        self.apply(0)
        self.terminal_message = f"rolled back: {short} at {pct(weight)}"
        self.event("Warning", "RolledBack", message)
        self.log = f"rolled back flag {self.spec.flag!r} to 0%: {message}"

    def halt(self, reason: str, message: str, event_reason: str, **culprit: Any) -> None:
        if self.st.halt is not None:  # already held for a person: no new alarm
            return
        self.update(halt=Halt(reason=reason, message=message, at=self.now, **culprit), phase=Phase.PAUSED)
        self.event("Warning", event_reason, message)
        self.log = f"paused flag {self.spec.flag!r}: {message}"

