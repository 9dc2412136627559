"""Kubernetes-style conditions (metav1.Condition) on a FeatureRollout's status, kept pure.

API conventions: `lastTransitionTime` moves only when `status` changes (a new reason or message
alone is not a transition), and the list has one entry per type in a stable order, so writing the
same conditions twice yields an equal status and the handler patches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from featurerollout.api import Condition, ConditionStatus

PROGRESSING = "Progressing"
READY = "Ready"
DEGRADED = "Degraded"
ANALYSIS = "Analysis"

# The order in which conditions are listed; unknown types follow, by name.
CONDITION_ORDER: tuple[str, ...] = (PROGRESSING, READY, DEGRADED, ANALYSIS)


def _order(condition: Condition) -> tuple[int, str]:
    try:
        return CONDITION_ORDER.index(condition.type), ""
    except ValueError:
        return len(CONDITION_ORDER), condition.type


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return `conditions` with the one of `type_` set; its lastTransitionTime moves only on a new status."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = now if previous is None or previous.status != status else previous.last_transition_time
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=_order)


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    """Return `conditions` without the one of `type_`."""
    return [c for c in conditions if c.type != type_]


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, if present."""
    return next((c for c in conditions if c.type == type_), None)
