"""The central schedule: due times, wake-ups, no concurrent work on one key, retries."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

from featurerollout.process.scheduler import Scheduler


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


async def test_work_runs_when_due_and_not_before() -> None:
    ran: list[tuple[str, float]] = []

    async def work(key: str) -> float | None:
        ran.append((key, time.monotonic()))
        return None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    start = time.monotonic()
    scheduler.wake("later", start + 0.3)
    scheduler.wake("now")
    await _until(lambda: len(ran) == 2)
    runner.cancel()
    assert [k for k, _ in ran] == ["now", "later"]
    assert ran[1][1] >= start + 0.3


async def test_work_returns_its_next_due_time() -> None:
    count = Counter[str]()

    async def work(key: str) -> float | None:
        count[key] += 1
        return time.monotonic() + 0.01 if count[key] < 3 else None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    scheduler.wake("a")
    await _until(lambda: count["a"] == 3)
    await asyncio.sleep(0.1)
    runner.cancel()
    assert count["a"] == 3


async def test_one_key_is_never_worked_on_twice_at_once_and_a_wake_during_work_reruns_it() -> None:
    active = 0
    peak = 0
    runs = 0
    release = asyncio.Event()

    async def work(key: str) -> float | None:
        nonlocal active, peak, runs
        active += 1
        peak = max(peak, active)
        runs += 1
        await release.wait()
        active -= 1
        return None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    scheduler.wake("a")
    await _until(lambda: runs == 1)
    for _ in range(5):
        scheduler.wake("a")
    release.set()
    await _until(lambda: runs == 2)
    await asyncio.sleep(0.05)
    runner.cancel()
    assert peak == 1
    assert runs == 2


async def test_different_keys_run_concurrently() -> None:
    started: set[str] = set()
    gate = asyncio.Event()

    async def work(key: str) -> float | None:
        started.add(key)
        await gate.wait()
        return None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    for key in "abcde":
        scheduler.wake(key)
    await _until(lambda: len(started) == 5)
    gate.set()
    runner.cancel()


async def test_failing_work_is_retried_with_backoff() -> None:
    attempts: list[float] = []

    async def work(key: str) -> float | None:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise RuntimeError("API down")
        return None

    # Backoff doubles from 0.5 s, capped at max_backoff: waits of 0.5, 0.8, 0.8 s.
    scheduler: Scheduler[str] = Scheduler(work, max_backoff=0.8)
    runner = asyncio.create_task(scheduler.run())
    scheduler.wake("a")
    await _until(lambda: len(attempts) == 4, timeout=20)
    runner.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # Lower bounds only (a loaded machine may wait longer, never shorter): each retry waited out
    # its backoff, the second one longer than the first (it doubles), the third one capped.
    assert gaps[0] >= 0.5, gaps
    assert gaps[1] >= 0.8, gaps
    assert gaps[2] >= 0.8, gaps
    assert scheduler.due_at("a") is None  # it succeeded: nothing more is scheduled


async def test_forgotten_key_is_not_run() -> None:
    ran: list[str] = []

    async def work(key: str) -> float | None:
        ran.append(key)
        return None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    scheduler.wake("gone", time.monotonic() + 0.05)
    scheduler.forget("gone")
    scheduler.wake("kept", time.monotonic() + 0.1)
    await _until(lambda: ran == ["kept"])
    runner.cancel()
    assert ran == ["kept"]


async def test_earlier_wake_wins_over_a_later_schedule() -> None:
    ran: list[float] = []

    async def work(key: str) -> float | None:
        ran.append(time.monotonic())
        return None

    scheduler: Scheduler[str] = Scheduler(work)
    runner = asyncio.create_task(scheduler.run())
    start = time.monotonic()
    scheduler.wake("a", start + 10)
    scheduler.wake("a", start + 0.02)
    await _until(lambda: len(ran) == 1)
    runner.cancel()
    assert ran[0] < start + 5
