"""The one small interface every target implements."""

from __future__ import annotations

from typing import Protocol


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
    """Exposes a flag to a share of users."""

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
