"""The engine's interface: what a decision is (the next status, the actions, when to look again)
and what the handler gives it besides the spec and status (what the target held, a request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from featurerollout.api import ControlAction, FeatureRolloutStatus


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

