"""In-memory object storage: a cluster-wide resourceVersion, a bounded event history per resource,
and the fan-out of new events to watch streams.

Everything here runs on the server's event loop; no locking is needed between awaits.
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from featurerollout_sandbox.errors import gone

Json = dict[str, Any]
ResourceKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)

DEFAULT_HISTORY_LIMIT = 1000


@dataclass(frozen=True)
class WatchEvent:
    """One change of one object: ADDED, MODIFIED or DELETED, at a resourceVersion."""

    rv: int
    type: str
    obj: Json
    prev: Json | None = None  # the object before a MODIFIED event (for selector transitions)


class Store:
    """Objects by resource, plus the change history that watches replay from a resourceVersion."""

    def __init__(self, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self.rv = 0
        self.history_limit = history_limit
        self._objects: dict[ResourceKey, dict[ObjectKey, Json]] = defaultdict(dict)
        self._history: dict[ResourceKey, deque[WatchEvent]] = defaultdict(deque)
        self._evicted_rv: dict[ResourceKey, int] = defaultdict(int)
        self._watchers: dict[ResourceKey, set[asyncio.Queue[WatchEvent | None]]] = defaultdict(set)

    def get(self, resource: ResourceKey, namespace: str, name: str) -> Json | None:
        """The stored object (not a copy: callers must not mutate it)."""
        return self._objects[resource].get((namespace, name))

    def objects(self, resource: ResourceKey, namespace: str | None = None) -> list[Json]:
        """Stored objects of a resource, in one namespace or all, sorted by namespace and name."""
        items = self._objects[resource]
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [items[k] for k in keys]

    def write(self, resource: ResourceKey, obj: Json, event_type: str) -> Json:
        """Store `obj` at a new resourceVersion and record the event (ADDED or MODIFIED)."""
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        meta = stored["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        prev = self._objects[resource].get(key)
        self._objects[resource][key] = stored
        self._record(resource, WatchEvent(self.rv, event_type, stored, prev))
        return stored

    def remove(self, resource: ResourceKey, obj: Json) -> Json:
        """Remove the object; the DELETED event carries it at a new resourceVersion."""
        self.rv += 1
        meta = obj["metadata"]
        self._objects[resource].pop((meta.get("namespace") or "", meta["name"]), None)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self.rv)
        self._record(resource, WatchEvent(self.rv, "DELETED", final))
        return final

    def _record(self, resource: ResourceKey, event: WatchEvent) -> None:
        history = self._history[resource]
        history.append(event)
        while len(history) > max(self.history_limit, 0):
            self._evicted_rv[resource] = history.popleft().rv
        for queue in self._watchers[resource]:
            queue.put_nowait(event)

    def events_since(self, resource: ResourceKey, rv: int) -> list[WatchEvent]:
        """Events after `rv`; 410 Gone when some of them have left the bounded history."""
        if rv < self._evicted_rv[resource]:
            raise gone(f"too old resource version: {rv} ({self._evicted_rv[resource] + 1})")
        return [e for e in self._history[resource] if e.rv > rv]

    def subscribe(self, resource: ResourceKey) -> asyncio.Queue[WatchEvent | None]:
        """A queue that receives every new event of the resource (None: the resource went away)."""
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._watchers[resource].add(queue)
        return queue

    def unsubscribe(self, resource: ResourceKey, queue: asyncio.Queue[WatchEvent | None]) -> None:
        """Stop delivering events to `queue`."""
        self._watchers[resource].discard(queue)

    def close_watches(self) -> None:
        """End every watch stream (the server is stopping)."""
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)

    def drop_resource(self, resource: ResourceKey) -> None:
        """Forget a resource whose CRD was deleted; its watch streams end."""
        for queue in self._watchers.pop(resource, set()):
            queue.put_nowait(None)
        self._objects.pop(resource, None)
        self._history.pop(resource, None)
