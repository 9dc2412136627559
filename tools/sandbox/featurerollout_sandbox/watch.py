"""`?watch=1`: newline-delimited JSON events, replayed from a resourceVersion, then live.

As kube-apiserver: no resourceVersion (or "0") starts with synthetic ADDED events for the
current objects. With `sendInitialEvents=true` (the streaming list of client-go's WatchList,
used by helm 4's --wait) they are followed by a BOOKMARK annotated `k8s.io/initial-events-end`.
A version older than the kept history answers an ERROR event with a 410 Expired Status inside
a 200 stream; BOOKMARKs are sent while idle when asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from featurerollout_sandbox import tables
from featurerollout_sandbox.cluster import Cluster
from featurerollout_sandbox.errors import ApiError
from featurerollout_sandbox.resources import ResourceType
from featurerollout_sandbox.store import WatchEvent

Json = dict[str, Any]


@dataclass
class WatchRequest:
    """What a watch asks for."""

    rt: ResourceType
    version: str
    namespace: str | None
    predicate: Callable[[Json], bool]
    resource_version: str | None
    timeout: float | None
    bookmarks: bool
    cut_after: int | None = None  # fault injection: close the connection after this many events
    on_start: Callable[[], None] | None = None  # called once the 200 response has started
    send_initial_events: bool = False  # the streaming list (client-go's WatchList, helm 4's --wait)
    table: str | None = None  # `kubectl get -w`: each object as a one-row Table (includeObject value)


class WatchCut(Exception):
    """The stream was cut on purpose (fault injection)."""


async def serve_watch(
    request: web.Request, cluster: Cluster, watch: WatchRequest, bookmark_interval: float, stopping: asyncio.Event
) -> web.StreamResponse:
    """Stream the events of one resource until the timeout, the client leaving, or the server stopping."""
    rt = watch.rt
    store = cluster.store
    queue = store.subscribe(rt.key)
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    sent = 0

    async def send(event_type: str, obj: Json) -> None:
        nonlocal sent
        await response.write(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")
        sent += 1
        if watch.cut_after is not None and sent >= watch.cut_after:
            raise WatchCut()

    def wanted(obj: Json) -> bool:
        ns = obj["metadata"].get("namespace") or ""
        return (watch.namespace is None or ns == watch.namespace) and watch.predicate(obj)

    async def deliver(event: WatchEvent) -> None:
        # As kube-apiserver's watch cache: an object that starts matching the selectors arrives as
        # ADDED, one that stops matching as DELETED, carrying its last state that matched at the
        # event's resourceVersion.
        now = wanted(event.obj)
        before = event.prev is not None and wanted(event.prev)
        event_type = event.type
        obj = event.obj
        if event.type == "MODIFIED" and now != before:
            event_type = "ADDED" if now else "DELETED"
            if not now and event.prev is not None:
                prev_meta = {**event.prev["metadata"], "resourceVersion": event.obj["metadata"]["resourceVersion"]}
                obj = {**event.prev, "metadata": prev_meta}
        elif not now:
            return
        served = cluster.serve(rt, watch.version, obj)
        if watch.table is not None:
            rows = tables.table(rt, watch.version, [served], served["metadata"]["resourceVersion"], watch.table)
            await send(event_type, rows)
        else:
            await send(event_type, served)

    try:
        # Take the starting point synchronously with subscribing: no event can slip in between.
        initial: list[WatchEvent] = []
        error: ApiError | None = None
        if watch.send_initial_events or watch.resource_version in (None, "", "0"):
            initial = [
                WatchEvent(int(o["metadata"]["resourceVersion"]), "ADDED", o)
                for o in cluster.list(rt, watch.namespace, watch.predicate)
            ]
            last_rv = store.rv
        else:
            try:
                last_rv = int(str(watch.resource_version))
                initial = store.events_since(rt.key, last_rv)
            except ValueError:
                error = ApiError(400, f"invalid resource version {watch.resource_version!r}")
                last_rv = store.rv
            except ApiError as exc:
                error = exc
                last_rv = store.rv
        await response.prepare(request)
        if watch.on_start is not None:
            watch.on_start()
        if watch.cut_after == 0:
            raise WatchCut()
        if error is not None:
            await send("ERROR", error.status())
            return response
        for event in initial:
            await deliver(event)
            last_rv = max(last_rv, event.rv)
        if watch.send_initial_events:
            # the end of the initial state, as kube-apiserver marks it for streaming lists
            end = _bookmark(rt, watch.version, last_rv)
            end["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
            await send("BOOKMARK", end)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + watch.timeout if watch.timeout else None
        while not stopping.is_set():
            wait = bookmark_interval
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(wait, remaining)
            try:
                item = await asyncio.wait_for(queue.get(), timeout=wait)
            except TimeoutError:
                if watch.bookmarks:
                    await send("BOOKMARK", _bookmark(rt, watch.version, store.rv))
                continue
            if item is None:
                break  # the resource went away (its CRD was deleted) or the server stops
            if item.rv <= last_rv:
                continue
            last_rv = item.rv
            await deliver(item)
        if watch.bookmarks and not stopping.is_set():
            await send("BOOKMARK", _bookmark(rt, watch.version, store.rv))
        await response.write_eof()
    except WatchCut:
        if request.transport is not None:
            request.transport.close()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        store.unsubscribe(rt.key, queue)
    return response


def _bookmark(rt: ResourceType, version: str, rv: int) -> Json:
    return {"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": {"resourceVersion": str(rv)}}
