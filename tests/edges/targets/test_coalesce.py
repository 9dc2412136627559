"""One write per flag document: concurrent changes to one document become one write, and each
caller learns its own outcome only once the write holding its change succeeded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from featurerollout.edges.targets.base import TargetError
from featurerollout.edges.targets.coalesce import DocumentReader, DocumentWriter, apply_batch

Doc = tuple[int, dict[str, str]]


class Store:
    """A versioned object; a write based on an older version is a 409, as the API answers. It can
    let another writer slip in before the next `conflicts` writes, or fail every write."""

    def __init__(self, conflicts: int = 0, failure: int | None = None) -> None:
        self.value: dict[str, str] = {"theirs": "1"}
        self.version = 1
        self.conflicts = conflicts
        self.failure = failure
        self.writes: list[dict[str, str]] = []
        self.attempts = 0

    async def read(self) -> Doc:
        await asyncio.sleep(0.001)
        return self.version, dict(self.value)

    async def write(self, new: Doc) -> None:
        self.attempts += 1
        await asyncio.sleep(0.005)  # a write takes a while: changes pile up behind it
        if self.failure:
            raise ApiException(status=self.failure, reason="Service Unavailable")
        version, value = new
        if self.conflicts:
            self.conflicts -= 1
            self.value["theirs"] = str(int(self.value["theirs"]) + 1)  # another process wrote meanwhile
            self.version += 1
        if version != self.version:
            raise ApiException(status=409, reason="Conflict")
        self.value, self.version = dict(value), self.version + 1
        self.writes.append(dict(value))


def set_key(key: str, value: str) -> Any:
    def change(current: Doc) -> Doc | None:
        version, body = current
        if body.get(key) == value:
            return None
        return version, {**body, key: value}

    return change


def refuse(reason: str) -> Any:
    def change(current: Doc) -> Doc | None:
        raise TargetError("FlagOwnedElsewhere", reason)

    return change


def test_apply_batch_chains_changes_and_keeps_each_outcome() -> None:
    body, outcomes = apply_batch((1, {"a": "0"}), [set_key("a", "1"), refuse("no"), set_key("b", "2"),
                                                    set_key("b", "2")])
    assert body == (1, {"a": "1", "b": "2"})
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], TargetError)
    assert outcomes[3] is False  # already done by the change before it in the same batch


def test_apply_batch_with_nothing_to_change_writes_nothing() -> None:
    body, outcomes = apply_batch((1, {"a": "1"}), [set_key("a", "1")])
    assert body is None and outcomes == [False]


async def test_fifty_concurrent_changes_to_one_document_are_few_writes_and_none_lost() -> None:
    store, writer = Store(), DocumentWriter()
    key = ("ConfigMap", "ns", "flags")
    results = await asyncio.gather(*(
        writer.update(key, "ConfigMap ns/flags", store.read, set_key(f"flag-{i}", "10"), store.write)
        for i in range(50)
    ))
    assert results == [True] * 50
    assert store.value == {"theirs": "1", **{f"flag-{i}": "10" for i in range(50)}}
    assert len(store.writes) <= 2, store.writes  # all were due at once: one batch (two at worst)
    assert store.attempts == len(store.writes)  # and no 409 from our own writers


async def test_a_change_arriving_during_a_write_goes_into_the_next_one() -> None:
    store, writer = Store(), DocumentWriter(linger=0)
    key = ("ConfigMap", "ns", "flags")
    first = asyncio.ensure_future(writer.update(key, "w", store.read, set_key("a", "1"), store.write))
    await asyncio.sleep(0.003)  # the first write is in flight
    late = [writer.update(key, "w", store.read, set_key(k, "1"), store.write) for k in ("b", "c", "d")]
    assert await asyncio.gather(first, *late) == [True] * 4
    assert len(store.writes) == 2
    assert store.writes[0] == {"theirs": "1", "a": "1"}  # the caller of `a` returned after this one
    assert store.value == {"theirs": "1", "a": "1", "b": "1", "c": "1", "d": "1"}


async def test_a_conflict_rereads_and_reapplies_the_whole_batch_keeping_the_other_write() -> None:
    store, writer = Store(conflicts=2), DocumentWriter()
    key = ("ConfigMap", "ns", "flags")
    results = await asyncio.gather(*(
        writer.update(key, "w", store.read, set_key(f"f{i}", "25"), store.write) for i in range(10)
    ))
    assert results == [True] * 10
    assert store.value["theirs"] == "3"  # the other process's two writes survive
    assert all(store.value[f"f{i}"] == "25" for i in range(10))


async def test_each_caller_gets_its_own_outcome() -> None:
    store, writer = Store(), DocumentWriter()
    key = ("ConfigMap", "ns", "flags")
    store.value["same"] = "1"
    outcomes = await asyncio.gather(
        writer.update(key, "w", store.read, set_key("new", "1"), store.write),
        writer.update(key, "w", store.read, refuse("flag x belongs to another rollout"), store.write),
        writer.update(key, "w", store.read, set_key("same", "1"), store.write),
        return_exceptions=True,
    )
    assert outcomes[0] is True
    assert isinstance(outcomes[1], TargetError) and outcomes[1].reason == "FlagOwnedElsewhere"
    assert outcomes[2] is False
    assert store.value == {"theirs": "1", "same": "1", "new": "1"}


async def test_a_failed_write_fails_every_change_in_it_and_records_nothing() -> None:
    store, writer = Store(failure=503), DocumentWriter()
    key = ("ConfigMap", "ns", "flags")
    outcomes = await asyncio.gather(*(
        writer.update(key, "ConfigMap ns/flags", store.read, set_key(f"f{i}", "1"), store.write) for i in range(5)
    ), return_exceptions=True)
    assert all(isinstance(o, TargetError) and o.reason == "TargetError" for o in outcomes), outcomes
    assert store.value == {"theirs": "1"}


async def test_different_documents_are_written_independently() -> None:
    one, two, writer = Store(), Store(failure=503), DocumentWriter()
    ok, failed = await asyncio.gather(
        writer.update(("ConfigMap", "ns", "one"), "one", one.read, set_key("a", "1"), one.write),
        writer.update(("ConfigMap", "ns", "two"), "two", two.read, set_key("a", "1"), two.write),
        return_exceptions=True,
    )
    assert ok is True and isinstance(failed, TargetError)
    assert one.value == {"theirs": "1", "a": "1"}


@pytest.mark.parametrize("linger", [0.0, 0.02])
async def test_nothing_is_left_behind_after_a_burst(linger: float) -> None:
    store, writer = Store(), DocumentWriter(linger=linger)
    await asyncio.gather(*(
        writer.update(("ConfigMap", "ns", "f"), "w", store.read, set_key(f"k{i}", "1"), store.write) for i in range(5)
    ))
    await asyncio.sleep(0)
    assert writer._documents == {} and not writer._tasks


async def test_reads_due_together_share_one_get_sent_after_all_asked() -> None:
    reader = DocumentReader(linger=0.01)
    calls: list[float] = []
    asked: list[float] = []
    loop = asyncio.get_running_loop()

    async def get() -> dict[str, str]:
        calls.append(loop.time())
        await asyncio.sleep(0.01)
        return {"v": str(len(calls))}

    async def look() -> Any:
        asked.append(loop.time())
        return await reader.read(("ConfigMap", "ns", "flags"), get)

    results = await asyncio.gather(*(look() for _ in range(20)))
    assert len(calls) == 1 and all(r == {"v": "1"} for r in results)
    assert calls[0] >= max(asked)  # the GET went out after the last caller asked
    late_first = asyncio.ensure_future(look())
    await asyncio.sleep(0.015)  # that GET is in flight now
    late = await look()  # so this one waits for a GET of its own
    assert (await late_first) == {"v": "2"} and late == {"v": "3"} and len(calls) == 3


async def test_a_failed_read_fails_every_caller_that_shared_it() -> None:
    reader = DocumentReader(linger=0.0)

    async def get() -> None:
        raise TargetError("TargetNotFound", "ConfigMap ns/flags does not exist")

    outcomes = await asyncio.gather(*(reader.read(("ConfigMap", "ns", "flags"), get) for _ in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, TargetError) and o.reason == "TargetNotFound" for o in outcomes)
    assert reader._waiting == {}
