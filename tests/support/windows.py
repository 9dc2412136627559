"""Negative checks over a window: "it did not happen" asserted all along, not at one look."""

from __future__ import annotations

import time
from collections.abc import Callable


def holds_for(predicate: Callable[[], bool], seconds: float, what: str, interval: float = 0.1) -> None:
    """Assert that `predicate()` stays true for the next `seconds` seconds, looking every
    `interval`; fails at the first look where it is false, saying `what` should have held."""
    deadline = time.monotonic() + seconds
    looks = 0
    while True:
        assert predicate(), f"{what} stopped holding after {looks} looks"
        looks += 1
        if time.monotonic() >= deadline:
            return
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
