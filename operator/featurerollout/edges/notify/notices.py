"""Which notifications a decision calls for: pure, from what the engine already decided.

The engine announces every moment worth telling with an Event (`engine.EmitEvent`); a
notification is one of those Events, picked by its reason and dressed with the decided status
(phase, weight, stage, and for a rollback the metric, its value and its budget from `status.halt`).
No rule of the engine is repeated here: a notification goes out exactly when its Event is posted,
so a RolledBack notification, like the Event, waits until the target really holds 0%.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from featurerollout.api import FeatureRolloutStatus, NotificationEvent
from featurerollout.core.engine import Decision, EmitEvent

# `featurerollout promote` says Promoted; to a channel it is a stage advanced (unless the same
# decision also says Started or Succeeded, which tell it better).
_PROMOTED = "Promoted"


@dataclass(frozen=True)
class Notification:
    """One thing to tell receivers about one rollout. Holds no credential."""

    event: NotificationEvent
    namespace: str
    rollout: str
    flag: str
    phase: str
    weight: float
    stage: str | None  # "2/4"
    message: str
    at: datetime
    reason: str | None = None  # a rollback's or abort's: BudgetExceeded, NoData, AnalysisError, Aborted
    metric: str | None = None  # a rollback's metric, its value and its budget
    value: float | None = None
    budget: str | None = None

    @property
    def severity(self) -> str:
        """`danger` for what took exposure away, `good` for success, else `info`."""
        if self.event in (NotificationEvent.ROLLED_BACK, NotificationEvent.ABORTED):
            return "danger"
        return "good" if self.event == NotificationEvent.SUCCEEDED else "info"


def derive(
    *, namespace: str, rollout: str, flag: str, decision: Decision, now: datetime
) -> list[Notification]:
    """The notifications for the Events in `decision` (in their order)."""
    events = [a for a in decision.actions if isinstance(a, EmitEvent)]
    reasons = {e.reason for e in events}
    after = decision.status
    found: list[Notification] = []
    for event in events:
        kind = _kind(event.reason, reasons)
        if kind is not None:
            found.append(_notification(kind, event.message, namespace, rollout, flag, after, now))
    return found


def _kind(reason: str, reasons: set[str]) -> NotificationEvent | None:
    if reason == _PROMOTED:
        told = {NotificationEvent.STARTED.value, NotificationEvent.SUCCEEDED.value}
        return None if reasons & told else NotificationEvent.STAGE_ADVANCED
    try:
        return NotificationEvent(reason)
    except ValueError:
        return None


def _notification(
    kind: NotificationEvent, message: str, namespace: str, rollout: str, flag: str,
    after: FeatureRolloutStatus, now: datetime,
) -> Notification:
    halt = after.halt if kind in (NotificationEvent.ROLLED_BACK, NotificationEvent.ABORTED) else None
    return Notification(
        event=kind, namespace=namespace, rollout=rollout, flag=flag, phase=after.phase.value,
        weight=after.current_weight, stage=after.stage, message=message, at=now,
        reason=halt.reason if halt else None, metric=halt.metric if halt else None,
        value=halt.value if halt else None, budget=halt.budget if halt else None,
    )
