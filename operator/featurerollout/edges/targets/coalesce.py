"""One write per flag document, not one per rollout.

Many rollouts can keep their flags in one document (50 flags in one flagd ConfigMap, many in one
FeatureFlag). Each writing on its own, they race: every write but one per round answers 409
Conflict, is re-read and re-applied, and the catch-up of 1,000 rollouts with 50 per ConfigMap made
6,705 writes of which 3,705 were 409s (docs/benchmarks.md).

Here the changes to one document that are due at the same moment are gathered and written
together: at most one write per document is in flight in this process; the changes submitted
meanwhile (or within `linger` seconds of the first) wait for it, and then go in one batch that is
applied, change by change, to ONE fresh read and written once with its resourceVersion
(targets/optimistic.py: a 409 re-reads and re-applies the whole batch, so another writer's change
is never lost). Each caller is then told its own outcome: written, nothing to write, or its own
TargetError (a flag owned by another rollout fails only that change; the others are still
written). A caller returns only after the write that holds its change succeeded, so a rollout never
records a weight that the document does not hold.

A change function must not alter the object before it raises (the target modules' changes check
first and then modify), so that one refused change leaves no trace in the batch's copy.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from featurerollout.edges.kube import Kube
from featurerollout.edges.targets import optimistic
from featurerollout.edges.targets.base import TargetError

DocumentKey = tuple[str, str, str]  # (kind, namespace, name): one API object
Change = Callable[[Any], Any]  # the object read -> the object to write, or None: nothing to write

# How long the first change of a batch waits for others due at the same moment. The scheduler
# starts the looks due together within a few milliseconds; a rollout's stage lasts minutes, so
# 20 ms is nothing to it.
LINGER_SECONDS = 0.02


@dataclass
class _Pending:
    change: Change
    done: asyncio.Future[bool]


@dataclass
class _Document:
    where: str
    read: Callable[[], Awaitable[Any]]
    write: Callable[[Any], Awaitable[object]]
    pending: list[_Pending] = field(default_factory=list)
    flushing: bool = False


def apply_batch(current: Any, changes: list[Change]) -> tuple[Any, list[bool | TargetError]]:
    """Pure: apply `changes` in order to `current`; returns (the object to write, or None when no
    change altered it) and each change's outcome (True: it altered the object, False: nothing to
    change, or the TargetError it raised, which leaves the object as it was)."""
    outcomes: list[bool | TargetError] = []
    body, changed = current, False
    for change in changes:
        try:
            updated = change(body)
        except TargetError as error:
            outcomes.append(error)
            continue
        if updated is None:
            outcomes.append(False)
        else:
            body, changed = updated, True
            outcomes.append(True)
    return (body if changed else None), outcomes


@dataclass
class DocumentWriter:
    """The operator's single writer per flag document (one per process, shared by every target)."""

    linger: float = LINGER_SECONDS
    _documents: dict[DocumentKey, _Document] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # held so that none is collected mid-write

    async def update(
        self,
        key: DocumentKey,
        where: str,
        read: Callable[[], Awaitable[Any]],
        change: Change,
        write: Callable[[Any], Awaitable[object]],
    ) -> bool:
        """Apply `change` to the document `key` together with the other changes due now; returns
        whether the write that holds this change altered anything for it (False: nothing to write).
        Raises this change's own TargetError, or the batch's when the write failed."""
        document = self._documents.get(key)
        if document is None:
            document = self._documents[key] = _Document(where, read, write)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        document.pending.append(_Pending(change, done))
        if not document.flushing:
            document.flushing = True
            self._start(key, document)
        return await done

    def _start(self, key: DocumentKey, document: _Document) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(key, document), name=f"write {document.where}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: DocumentKey, document: _Document) -> None:
        try:
            if self.linger > 0:
                await asyncio.sleep(self.linger)
            while document.pending:
                batch, document.pending = document.pending, []
                await self._write(document, batch)
        finally:
            document.flushing = False
            if document.pending:  # a change arrived as the last write ended (cancellation aside)
                document.flushing = True
                self._start(key, document)
            elif self._documents.get(key) is document:
                del self._documents[key]  # keep nothing per document between bursts

    @staticmethod
    async def _write(document: _Document, batch: list[_Pending]) -> None:
        outcomes: list[bool | TargetError] = []

        def change(current: Any) -> Any:
            # Run again on every attempt (a 409 re-reads): the outcomes are those of the last read.
            body, results = apply_batch(current, [pending.change for pending in batch])
            outcomes[:] = results
            return body

        try:
            await optimistic.update(document.where, document.read, change, document.write)
        except BaseException as error:  # the write failed: every change waiting on it learns so
            failure = (error if isinstance(error, TargetError)
                       else TargetError("TargetError", f"{document.where}: {error}"))
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(failure)
            if not isinstance(error, Exception):
                raise
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.done.done():
                continue
            if isinstance(outcome, TargetError):
                pending.done.set_exception(outcome)
            else:
                pending.done.set_result(outcome)


# How long the first read of a document waits for the other looks that read it at the same moment.
READ_LINGER_SECONDS = 0.05


@dataclass
class DocumentReader:
    """One GET for the looks that read one flag document at the same moment (each rollout reads its
    target at every look, for drift and ownership; 50 rollouts in one ConfigMap, due together, made
    50 GETs of one object). The GET is sent only after every caller that shares it asked, so each
    gets an answer at least as fresh as its own GET would have been; a caller that comes while it is
    in flight waits for the next one. Callers share the object: they only read it."""

    linger: float = READ_LINGER_SECONDS
    _waiting: dict[DocumentKey, list[asyncio.Future[Any]]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def read(self, key: DocumentKey, read: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = []
            task = loop.create_task(self._read(key, read))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting.append(done)
        return await done

    async def _read(self, key: DocumentKey, read: Callable[[], Awaitable[Any]]) -> None:
        try:
            await asyncio.sleep(self.linger)
        finally:
            waiting = self._waiting.pop(key, [])
        try:
            body = await read()
        except BaseException as error:
            for done in waiting:
                if not done.done():
                    done.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for done in waiting:
            if not done.done():
                done.set_result(body)


@dataclass
class Documents:
    """The writer and the reader of the flag documents of one API client."""

    writes: DocumentWriter = field(default_factory=DocumentWriter)
    reads: DocumentReader = field(default_factory=DocumentReader)


# One writer and one reader per client, so per process (each process has one Kube): the targets
# of every rollout that share a document share them. Kept by the client's identity, and gone with it.
_DOCUMENTS: weakref.WeakKeyDictionary[Kube, Documents] = weakref.WeakKeyDictionary()


def documents_of(kube: Kube) -> Documents:
    """The flag documents' writer and reader for everything that writes through `kube`."""
    documents = _DOCUMENTS.get(kube)
    if documents is None:
        documents = _DOCUMENTS[kube] = Documents()
    return documents
