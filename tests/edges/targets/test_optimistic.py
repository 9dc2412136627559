"""Read-modify-write under optimistic concurrency: a conflict re-reads, other errors say where."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from featurerollout.edges.targets.base import TargetError
from featurerollout.edges.targets.optimistic import update


class Store:
    """An object with a version; a write based on an older version is a 409, as the API answers."""

    def __init__(self, conflicts: int = 0, failure: int | None = None) -> None:
        self.value: dict[str, str] = {"theirs": "1"}
        self.version = 1
        self.conflicts = conflicts
        self.failure = failure

    async def read(self) -> tuple[int, dict[str, str]]:
        return self.version, dict(self.value)

    async def write(self, new: tuple[int, dict[str, str]]) -> None:
        if self.failure:
            raise ApiException(status=self.failure, reason="Service Unavailable")
        version, value = new
        if self.conflicts:
            self.conflicts -= 1
            self.value["theirs"] = str(int(self.value["theirs"]) + 1)  # someone else wrote meanwhile
            self.version += 1
        if version != self.version:
            raise ApiException(status=409, reason="Conflict")
        self.value, self.version = value, self.version + 1


def ours(current: tuple[int, dict[str, str]]) -> tuple[int, dict[str, str]] | None:
    version, value = current
    return None if value.get("ours") == "x" else (version, {**value, "ours": "x"})


async def test_conflicts_are_retried_on_fresh_reads_and_keep_the_other_write() -> None:
    store = Store(conflicts=3)
    assert await update("ConfigMap a/b", store.read, ours, store.write) is True
    assert store.value == {"theirs": "4", "ours": "x"}


async def test_nothing_to_change_writes_nothing() -> None:
    store = Store()
    store.value["ours"] = "x"
    assert await update("ConfigMap a/b", store.read, ours, store.write) is False
    assert store.version == 1


async def test_endless_conflicts_give_up_with_a_clear_error() -> None:
    store = Store(conflicts=100)
    with pytest.raises(TargetError) as error:
        await update("ConfigMap a/b", store.read, ours, store.write, attempts=3)
    assert error.value.reason == "TargetConflict"
    assert "ConfigMap a/b: still conflicting with other writers after 3 attempts" in error.value.message


async def test_other_api_errors_name_the_target() -> None:
    store = Store(failure=503)
    with pytest.raises(TargetError) as error:
        await update("ConfigMap a/b", store.read, ours, store.write)
    assert error.value.reason == "TargetError" and error.value.message.startswith("ConfigMap a/b: ")
