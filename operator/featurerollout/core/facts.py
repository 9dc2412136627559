"""What a rollout's spec and status say, read without deciding anything: which phases are active,
how long a stage holds, where the exposure lives, whether a rollback is pending, the plan's hash,
and when to look again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

import featurerollout.core.gates as gates
from featurerollout.api import LOWERED_BY_HAND, FeatureRolloutSpec, FeatureRolloutStatus, Phase
from featurerollout.core.measurement import analysis_interval

# Reasons a target reports through settle(); while one is on Degraded, decide() writes the
# current weight again so that the condition clears only once the target really takes a write.
# (targets/httproute.py and targets/webhook.py list theirs in REASONS; a test keeps them in here.)
TARGET_REASONS = frozenset({
    "TargetError", "InvalidDocument", "TargetNotFound", "TargetConflict", "FlagOwnedElsewhere",
    "RuleNotFound", "BackendNotFound", "BackendNotService",  # httpRoute
    "WebhookUnreachable", "WebhookFailed", "WebhookRejected", "SecretNotFound", "InvalidSecret",  # webhook
})
# The condition that records the last drift found (and put right) on the target.
TARGET_IN_SYNC = "TargetInSync"

# Waiting: held at a closed gate (gates.py); analysis, rollback and spec changes go on as in Progressing.
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING})


def analysis_due(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> bool:
    """Should the handler measure every metric before calling decide()?

    True with spec.analysis set, on a started rollout that is Progressing or Paused (a pause stops
    promotion only: analysis and automatic rollback keep protecting users), once an interval has
    passed since the last analysis.
    """
    interval = analysis_interval(spec)
    if interval is None or status.phase not in ACTIVE_PHASES or status.started_at is None:
        return False
    return status.last_analysis_at is None or now >= status.last_analysis_at + interval.every


def next_check(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> datetime | None:
    """When decide() should run again at the latest: the stage's end or the next analysis,
    whichever comes first; None when only a change can move the rollout (finished, or waiting)."""
    if status.terminal:
        return None
    if status.phase == Phase.PENDING:
        return now
    interval = analysis_interval(spec)
    if status.phase == Phase.WAITING:
        # At a gate: its next ask or its timeout, and the analysis, which never stops for a gate.
        moments = [m for m in (gates.next_look(spec, status, now),) if m is not None]
        if interval is not None and status.started_at is not None:
            due = now if status.last_analysis_at is None else status.last_analysis_at + interval.every
            moments.append(max(due, now))
        return min(moments) if moments else None
    if status.started_at is None:  # paused before the start: waits for a person or a spec change
        return None
    candidates: list[datetime] = []
    if interval is not None:
        due = now if status.last_analysis_at is None else status.last_analysis_at + interval.every
        candidates.append(max(due, now))
    if status.phase == Phase.PROGRESSING and status.stage_started_at is not None:
        end = status.stage_started_at + stage_hold(spec, status.current_stage)
        if end > now:
            candidates.append(end)
    return min(candidates) if candidates else None



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



def lowered_by_hand(status: FeatureRolloutStatus) -> bool:
    """Is the rollout held where a person lowered its flag outside the operator (halt LoweredByHand)?"""
    return status.halt is not None and status.halt.reason == LOWERED_BY_HAND


def rollback_pending(status: FeatureRolloutStatus) -> bool:
    """A rollback (or abort) on record whose 0% the target has not taken yet: RolledBack with a
    weight, unless that weight is one a person left by hand (nothing of ours to send)."""
    return status.phase == Phase.ROLLED_BACK and status.current_weight > 0 and not lowered_by_hand(status)



def stage_hold(spec: FeatureRolloutSpec, index: int) -> timedelta:
    return spec.stages[min(index, len(spec.stages) - 1)].hold

