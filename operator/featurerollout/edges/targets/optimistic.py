"""Read-modify-write under optimistic concurrency, shared by every target kept in an API object.

The write carries the resourceVersion that was read; a 409 Conflict means someone else wrote in
between, so the object is read again and only our change is re-applied to their version. Their
write is never lost, and ours is never based on a stale copy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from featurerollout.edges import telemetry
from featurerollout.edges.api_errors import CONFLICT, api_message, status_code
from featurerollout.edges.targets.base import TargetError

T = TypeVar("T")

MAX_ATTEMPTS = 12


async def update(
    where: str,
    read: Callable[[], Awaitable[T]],
    change: Callable[[T], T | None],
    write: Callable[[T], Awaitable[object]],
    attempts: int = MAX_ATTEMPTS,
) -> bool:
    """Apply `change` to what `read` returns and `write` it, again on conflict. `change` returns
    None when nothing needs writing. Returns whether anything was written."""
    for attempt in range(attempts):
        current = await read()
        updated = change(current)
        if updated is None:
            return False
        try:
            await write(updated)
            telemetry.target_writes.labels("ok").inc()
            return True
        except Exception as error:
            if status_code(error) != CONFLICT:
                telemetry.target_writes.labels("error").inc()
                raise TargetError("TargetError", f"{where}: {api_message(error)}") from None
            telemetry.target_writes.labels("conflict").inc()
            # Back off a little (with jitter, so that many writers spread out), then re-read.
            await asyncio.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.0))
    raise TargetError(
        "TargetConflict", f"{where}: still conflicting with other writers after {attempts} attempts; will try again"
    )
