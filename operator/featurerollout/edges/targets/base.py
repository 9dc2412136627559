"""The one small interface every target implements."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from featurerollout.api import LOWERED_BY_HAND
from featurerollout.api.group import annotation


class TargetError(Exception):
    """The target could not be read or written. `reason` is a CamelCase word for conditions and
    Events (TargetNotFound, InvalidDocument, TargetConflict, TargetError, and each target's own:
    see REASONS in httproute.py and webhook.py); the message says what was wrong, where, and what
    to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Target(Protocol):
    """Exposes a flag to a share of users, and keeps one owner per flag.

    Ownership (see README, "One rollout per flag"): a target that can keep a marker next to the
    flag (flagd flag `metadata`, an annotation) reports it from holding() and writes it with
    every apply(); one that cannot returns owner None from holding(), and its claim() does
    nothing: ownership is then not enforced for it.
    """

    # Whether current_weight() reads what the target itself holds now (a ConfigMap, a FeatureFlag,
    # an HTTPRoute), or only knows what the target last acknowledged (a webhook: the service has
    # no read contract). A drift check must only trust a target that reads back.
    reads_back: bool

    def describe(self) -> str:
        """Where the flag lives, for messages: `ConfigMap shop/feature-flags key flags.flagd.json`."""
        ...

    async def apply(self, weight: float) -> bool:
        """Make the flag expose `weight` percent. Returns whether anything was written.
        Raises TargetError when it cannot; it never overwrites what it cannot understand."""
        ...

    async def current_weight(self) -> float | None:
        """The weight the target exposes now (None when the flag is not there; for a target that
        does not read back, None when it has acknowledged nothing yet)."""
        ...

    def expect(self, read: float | None) -> None:
        """Every later apply() refuses (TargetError LOWERED_BY_HAND) to raise the flag when it holds
        less than `read`, the weight this look read: someone lowered it since (check_not_lowered())."""
        ...

    def claim(self, owner: Owner, replacing: Owner | None = None) -> None:
        """Every later apply() writes `owner`'s marker with the weight, and raises
        TargetError(OWNED_ELSEWHERE) instead of writing when the flag carries another owner's
        marker, unless that marker is `replacing` (one the caller verified is gone): check it
        with check_owner() on the copy about to be written."""
        ...

    async def holding(self) -> Holding:
        """The flag's weight and owner marker as the target holds them now, in one read. Raises
        TargetError when it cannot be read (TargetNotFound, InvalidDocument, TargetError)."""
        ...


# --- ownership: one FeatureRollout per flag ------------------------------------------------------

OWNED_ELSEWHERE = "FlagOwnedElsewhere"
OWNER_KEY = annotation("owner")
OWNER_UID_KEY = annotation("owner-uid")


@dataclass(frozen=True)
class Owner:
    """The FeatureRollout that drives a flag, as marked next to the flag in its target. The uid
    tells a rollout apart from a later one of the same name (a GitOps prune and re-create)."""

    namespace: str
    name: str
    uid: str

    def describe(self) -> str:
        return f"FeatureRollout {self.namespace}/{self.name} (uid {self.uid})"

    def marker(self) -> dict[str, str]:
        """The marker as string pairs (flagd flag `metadata` takes strings, numbers and booleans)."""
        return {OWNER_KEY: f"{self.namespace}/{self.name}", OWNER_UID_KEY: self.uid}

    @staticmethod
    def from_marker(marker: Any) -> Owner | None:
        """The owner a marker names; None when there is no (well-formed) marker."""
        if not isinstance(marker, dict):
            return None
        where, uid = marker.get(OWNER_KEY), marker.get(OWNER_UID_KEY)
        if not isinstance(where, str) or "/" not in where or not isinstance(uid, str):
            return None
        namespace, name = where.split("/", 1)
        return Owner(namespace, name, uid)


@dataclass(frozen=True)
class Holding:
    """What a target holds for one flag, read in one go: its weight (None: no entry for the flag)
    and the owner marked on it (None: no marker, or a target that cannot hold one)."""

    weight: float | None
    owner: Owner | None


def check_owner(where: str, flag: str, found: Owner | None, owner: Owner | None, replacing: Owner | None) -> None:
    """Raise TargetError(OWNED_ELSEWHERE) unless `owner` may write the flag: no marker, its own
    (same uid), or `replacing` (a marker whose rollout the caller verified is gone). Targets call
    it on the copy they are about to write, inside their read-modify-write, so that two rollouts
    racing for one flag cannot both win."""
    if owner is None or found is None or found.uid == owner.uid or found == replacing:
        return
    raise TargetError(
        OWNED_ELSEWHERE,
        f"flag {flag!r} in {where} belongs to {found.describe()}: one FeatureRollout per flag, so this one "
        "never writes it. Delete one of the two; the other takes the flag over at its next look",
    )


# --- the kill switch: never raise a flag someone lowered while the look was under way --------------

def check_not_lowered(where: str, flag: str, read: float | None, now: float | None, weight: float) -> None:
    """Raise TargetError(LOWERED_BY_HAND) when writing `weight` would raise the flag above what it
    holds `now` (None: no entry, 0%), and `now` is below `read`, what the look read before it
    measured and decided: a person switched it off meanwhile, and a stage step must not undo that.
    Targets call it on the copy they are about to write, inside their read-modify-write, as they
    call check_owner(); the next look then finds the lowering and records it (engine)."""
    held = now or 0.0
    if read is None or weight <= held + 1e-9 or held >= read - 1e-9:
        return
    raise TargetError(
        LOWERED_BY_HAND,
        f"flag {flag!r} in {where} was lowered to {held:g}% outside the operator while this look was under way "
        f"(it read {read:g}%); not raised to {weight:g}%: the rollout holds it where it was left",
    )


# --- the owner marker as an annotation (objects whose flag entries cannot carry metadata) --------

OWNERS_ANNOTATION = annotation("owners")


def annotated_owners(body: dict[str, Any]) -> dict[str, Any]:
    """The owner markers kept in an object's `featurerollout.io/owners` annotation, by key (a flag,
    a route's backend): JSON, so one annotation serves every flag of the object."""
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(OWNERS_ANNOTATION)
    try:
        owners = json.loads(raw) if raw else {}
    except ValueError:
        owners = {}
    return owners if isinstance(owners, dict) else {}


def annotate_owner(body: dict[str, Any], key: str, owner: Owner) -> None:
    """Write `owner`'s marker for `key` into the object's owners annotation (in place)."""
    owners = annotated_owners(body)
    owners[key] = owner.marker()
    metadata = body.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations[OWNERS_ANNOTATION] = json.dumps(owners, sort_keys=True)
    metadata["annotations"] = annotations
