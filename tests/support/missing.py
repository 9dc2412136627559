"""What a test does when something it needs is not installed: skip, saying what to install; but
under CI (`CI` set, and not `0`/`false`) fail, since CI must never skip a tier silently."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    """Whether this run is CI's (`CI=true`, as every CI service sets it)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def skip_or_fail(reason: str, *, module: bool = False) -> NoReturn:
    """Skip for `reason` (the whole module with `module`, at import); fail under CI."""
    if under_ci():
        pytest.fail(f"CI is set and {reason}; CI must run these tests", pytrace=False)
    pytest.skip(reason, allow_module_level=module)
