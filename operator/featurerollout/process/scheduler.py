"""One central schedule for every rollout the operator watches.

Why not a Kopf timer per object: a timer wakes every rollout every tick whether or not anything
is due, and 1,000 rollouts ticking each second cost more CPU than the whole budget. Here each
rollout sleeps in one heap until the moment the engine said it next needs a look (the end of its
stage, its next analysis) or until the API tells us it changed. An idle rollout costs a heap
entry and nothing else: no CPU, no API call.

Guarantees: one rollout is never worked on by two tasks at once (a wake-up during work re-runs
it right after), work on different rollouts runs concurrently (bounded), and a failing piece of
work is retried with backoff instead of being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger(__name__)

# The work for one key returns the monotonic time of its next due check, or None for "only when
# something changes".
Work = Callable[[K], Awaitable[float | None]]


@dataclass
class _State:
    due: float | None = None  # the monotonic time it is due, None when nothing is scheduled
    running: bool = False
    again: bool = False  # woken while running: run once more right after
    failures: int = 0


@dataclass
class Scheduler(Generic[K]):
    """Runs `work(key)` for each key when it is due."""

    work: Work[K]
    concurrency: int = 64
    max_backoff: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _states: dict[K, _State] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _counter: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def wake(self, key: K, at: float | None = None) -> None:
        """Schedule `key` at monotonic time `at` (now when None); an earlier schedule wins."""
        when = self.clock() if at is None else at
        state = self._states.setdefault(key, _State())
        if state.running:
            if when <= self.clock():
                state.again = True
            elif state.due is None or when < state.due:
                state.due = when
            return
        if state.due is not None and state.due <= when:
            return
        state.due = when
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, key))
        self._changed.set()

    def forget(self, key: K) -> None:
        """Stop scheduling `key` (its object is gone)."""
        self._states.pop(key, None)

    @property
    def keys(self) -> list[K]:
        return list(self._states)

    def due_at(self, key: K) -> float | None:
        state = self._states.get(key)
        return None if state is None else state.due

    async def run(self) -> None:
        """Serve the schedule until cancelled."""
        limit = asyncio.Semaphore(self.concurrency)
        try:
            while True:
                await self._wait_for_next()
                now = self.clock()
                while self._heap and self._heap[0][0] <= now:
                    when, _, key = heapq.heappop(self._heap)
                    state = self._states.get(key)
                    if state is None or state.due != when or state.running:
                        continue  # stale entry: forgotten, rescheduled, or already running
                    state.due = None
                    state.running = True
                    await limit.acquire()
                    task = asyncio.create_task(self._run_one(key, state, limit))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _wait_for_next(self) -> None:
        self._changed.clear()
        timeout = None if not self._heap else max(0.0, self._heap[0][0] - self.clock())
        if timeout == 0.0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _run_one(self, key: K, state: _State, limit: asyncio.Semaphore) -> None:
        next_due: float | None
        try:
            next_due = await self.work(key)
            state.failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            state.failures += 1
            delay = min(self.max_backoff, 0.5 * 2 ** (state.failures - 1))
            log.exception("working on %s failed (%d in a row); retrying in %.1fs", key, state.failures, delay)
            next_due = self.clock() + delay
        finally:
            limit.release()
            state.running = False
        if self._states.get(key) is not state:
            return  # forgotten while running
        pending, state.due = state.due, None
        if state.again:
            state.again = False
            self.wake(key)
            return
        for candidate in (pending, next_due):
            if candidate is not None:
                self.wake(key, candidate)
