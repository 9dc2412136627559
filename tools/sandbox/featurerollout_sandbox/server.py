"""The sandbox's HTTP server: routing, request decoding, fault injection and the request log.

`SandboxServer` runs on the caller's event loop; `Sandbox` runs one in a background thread on a
free loopback port (a context manager, for fast in-process tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from featurerollout_sandbox import discovery, openapi, patch, protobuf, selectors, tables
from featurerollout_sandbox.cluster import Cluster
from featurerollout_sandbox.errors import ApiError, status_body
from featurerollout_sandbox.faults import ERROR_REASONS, FaultInjector, RequestInfo, RequestLog, RequestRecord
from featurerollout_sandbox.kubeconfig import write_kubeconfig
from featurerollout_sandbox.resources import ResourceType
from featurerollout_sandbox.store import DEFAULT_HISTORY_LIMIT
from featurerollout_sandbox.watch import WatchRequest, serve_watch

Json = dict[str, Any]
log = logging.getLogger("featurerollout_sandbox")

CONTROL_PREFIX = "/sandbox/"


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_resource_path(path: str) -> Target | None:
    """`/apis/g/v/namespaces/ns/plural/name/status` -> Target; None for non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Target(
        group,
        version,
        rest[0],
        namespace,
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )


def verb_of(method: str, target: Target | None, query: Any) -> str:
    """The Kubernetes verb of a request (get/list/watch/create/update/patch/delete/deletecollection)."""
    watching = str(query.get("watch", "")).lower() in ("1", "true")
    if target is None:
        return "get"
    if method == "GET":
        if watching:
            return "watch"
        return "get" if target.name else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if target.name else "deletecollection",
    }.get(method, method.lower())


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response as kube-apiserver writes it."""
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: ApiError) -> web.Response:
    """An ApiError as a Status body."""
    headers = {"Retry-After": "1"} if exc.code == 429 else None
    return json_response(exc.status(), exc.code, headers)


class SandboxServer:
    """A local Kubernetes API on 127.0.0.1 for this project's kinds."""

    def __init__(
        self,
        crd_paths: Iterable[Path] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        bookmark_interval: float = 1.0,
        crd_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.bookmark_interval = bookmark_interval
        self.cluster = Cluster(history_limit)
        self.faults = FaultInjector()
        self.requests = RequestLog()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        paths: list[Path] = []
        # The CRD directory is always given (there is no checkout to find one in): the tests and
        # the demo pass this repository's crds/.
        if crd_dir is not None:
            paths += sorted(p for p in crd_dir.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        paths += [Path(p) for p in crd_paths or []]
        for path in paths:
            self.load_crds(path)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    def load_crds(self, path: Path) -> list[str]:
        """Serve the CRDs of a YAML/JSON file (other documents in it are ignored); their names."""
        names = []
        with open(path, encoding="utf-8") as stream:
            for doc in yaml.safe_load_all(stream):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    try:
                        self.cluster.load_crd(doc)
                    except ApiError as exc:
                        raise ValueError(f"{path}: {exc.message}") from exc
                    names.append(doc["metadata"]["name"])
        return names

    async def start(self) -> None:
        """Listen on host:port (port 0: a free one); `self.port` holds the port afterwards."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.requested_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        log.info("sandbox serving on %s", self.url)

    async def stop(self) -> None:
        """End watch streams and close the listener."""
        self._stopping.set()
        self.cluster.store.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -------------------------------------------------------------------------------- dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            try:
                return await self._control(request)
            except (ValueError, TypeError) as exc:
                return json_response(status_body(400, str(exc), "BadRequest"), 400)
        started = time.monotonic()
        target = parse_resource_path(request.path)
        verb = verb_of(request.method, target, request.query)
        info = RequestInfo(
            verb=verb,
            group=target.group if target else "",
            resource=target.plural if target else "",
            subresource=(target.subresource or "") if target else "",
            namespace=(target.namespace or "") if target else "",
            name=(target.name or "") if target else "",
        )
        decision = self.faults.decide(info) if target else None
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = time.monotonic() - started
            self.requests.append(
                RequestRecord(
                    time=time.time(),
                    method=request.method,
                    verb=verb,
                    path=request.path,
                    query=request.query_string,
                    group=info.group,
                    resource=info.resource,
                    subresource=info.subresource,
                    namespace=info.namespace,
                    name=info.name,
                    user_agent=request.headers.get("User-Agent", ""),
                    status=status,
                    duration=elapsed,
                    faults=decision.fault_ids if decision else [],
                )
            )
            log.debug("%s %s %s -> %s (%.1f ms) %s", request.method, request.path_qs, verb, status,
                      elapsed * 1000, request.headers.get("User-Agent", ""))

        try:
            if decision and decision.latency:
                await asyncio.sleep(decision.latency)
            if decision and decision.error:
                fault = decision.error
                reason = ERROR_REASONS.get(fault.status, "InternalError")
                message = fault.message or f"injected fault {fault.id}: {reason}"
                response: web.StreamResponse = error_response(ApiError(fault.status, message, reason))
            elif target is None:
                response = await self._non_resource(request)
            else:
                # a watch is recorded when its stream starts (it may last for minutes)
                response = await self._resource(
                    request, target, verb, decision.cut_after if decision else None, lambda: record(200)
                )
        except ApiError as exc:
            response = error_response(exc)
        except Exception as exc:
            log.error("internal error on %s %s\n%s", request.method, request.path_qs, traceback.format_exc())
            response = error_response(ApiError(500, f"sandbox internal error: {exc!r}"))
        record(response.status)
        return response

    async def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if request.method != "GET":
            raise ApiError(405, f"method {request.method} not allowed on {path}")
        groups = self.cluster.groups()
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.version_info())
        if path == "/api":
            return json_response(discovery.api_versions(f"{self.host}:{self.port}"))
        if path == "/api/v1":
            return json_response(discovery.resource_list("", "v1", groups.get("", [])))
        if path == "/apis":
            return json_response(discovery.api_group_list(groups))
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in groups:
            return json_response(discovery.api_group(parts[1], groups[parts[1]]))
        if parts[0] == "apis" and len(parts) == 3 and parts[1] in groups:
            listing = discovery.resource_list(parts[1], parts[2], groups[parts[1]])
            if listing["resources"]:
                return json_response(listing)
        if parts[:2] == ["openapi", "v3"]:
            documents = self._openapi_documents(groups)
            if len(parts) == 2:
                return json_response(openapi.index(documents))
            key = "/".join(parts[2:])
            if key in documents:
                return json_response(documents[key])
        raise ApiError(404, "the server could not find the requested resource", "NotFound", {})

    def _openapi_documents(self, groups: dict[str, list[ResourceType]]) -> dict[str, Json]:
        documents: dict[str, Json] = {}
        for group, rts in groups.items():
            versions = sorted({v.name for rt in rts for v in rt.versions})
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                documents[key] = openapi.group_version_document(group, version, rts)
        return documents

    # ------------------------------------------------------------------------------- resources

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        content_type = request.content_type
        if "protobuf" in content_type:
            return protobuf.decode(raw)
        try:
            if content_type == patch.APPLY or content_type.endswith("yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"error decoding request body: {exc}") from exc

    async def _resource(
        self,
        request: web.Request,
        target: Target,
        verb: str,
        cut_after: int | None,
        on_watch_start: Callable[[], None],
    ) -> web.StreamResponse:
        cluster = self.cluster
        rt = cluster.resolve(target.group, target.version, target.plural)
        if target.namespace is not None and not rt.namespaced:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if target.subresource and target.subresource != "status":
            raise ApiError(404, f"the server could not find the requested resource ({target.subresource})")
        if target.subresource == "status" and not rt.has_status(target.version):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        query = request.query
        version = target.version
        dry_run = query.get("dryRun") == "All"
        accept = request.headers.get("Accept", "")
        ns = target.namespace
        name = target.name or ""

        if verb in ("list", "watch"):
            predicate = self._predicate(rt, query)
            if verb == "watch":
                timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
                watch = WatchRequest(
                    rt, version, ns, predicate, query.get("resourceVersion"), timeout,
                    str(query.get("allowWatchBookmarks", "")).lower() in ("1", "true"), cut_after,
                    on_watch_start,
                    str(query.get("sendInitialEvents", "")).lower() == "true",
                    query.get("includeObject", "Metadata") if tables.wants_table(accept) else None,
                )
                if watch.send_initial_events and not (
                    watch.bookmarks and query.get("resourceVersionMatch") == "NotOlderThan"
                ):
                    raise ApiError(
                        422,
                        "sendInitialEvents: Forbidden: sendInitialEvents requires allowWatchBookmarks=true and "
                        "resourceVersionMatch=NotOlderThan",
                    )
                return await serve_watch(request, cluster, watch, self.bookmark_interval, self._stopping)
            items = [cluster.serve(rt, version, o) for o in cluster.list(rt, ns, predicate)]
            rv = str(cluster.store.rv)
            if tables.wants_table(accept):
                return json_response(tables.table(rt, version, items, rv, query.get("includeObject", "Metadata")))
            return json_response({
                "kind": rt.list_kind,
                "apiVersion": rt.api_version(version),
                "metadata": {"resourceVersion": rv},
                "items": items,
            })
        if verb == "get":
            obj = cluster.serve(rt, version, cluster.get(rt, ns, name))
            if tables.wants_table(accept):
                rv = obj["metadata"]["resourceVersion"]
                return json_response(tables.table(rt, version, [obj], rv, query.get("includeObject", "Metadata")))
            return json_response(obj)
        body = await self._body(request) if verb != "delete" or request.can_read_body else None
        # no await from here on: the per-request settings of the shared cluster cannot interleave
        cluster.field_validation = query.get("fieldValidation", "Warn")
        cluster.warnings = []
        if verb == "create":
            if target.name is not None:
                raise ApiError(405, "POST is not allowed on a named object")
            created = cluster.create(rt, version, ns, body or {}, dry_run)
            return self._written(cluster.serve(rt, version, created), 201)
        if verb == "update":
            updated = cluster.replace(rt, version, ns, name, body or {}, target.subresource, dry_run)
            return self._written(cluster.serve(rt, version, updated), 200)
        if verb == "patch":
            patched = cluster.patch(
                rt, version, ns, name, request.content_type, body, target.subresource, dry_run,
                query.get("fieldManager"),
            )
            return self._written(cluster.serve(rt, version, patched), 200)
        if verb == "delete":
            obj, gone = cluster.delete(rt, ns, name, body if isinstance(body, dict) else None, dry_run)
            if gone and rt.builtin:
                return json_response({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": obj["metadata"]["uid"]},
                })
            return json_response(cluster.serve(rt, version, obj), 200)
        if verb == "deletecollection":
            predicate = self._predicate(rt, query)
            for obj in cluster.list(rt, ns, predicate):
                cluster.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], None, dry_run)
            return json_response({"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                                  "metadata": {"resourceVersion": str(cluster.store.rv)}, "items": []})
        raise ApiError(405, f"method {request.method} is not allowed here")

    def _written(self, obj: Json, status: int) -> web.Response:
        headers = {}
        if self.cluster.warnings:
            headers["Warning"] = ", ".join(f"299 - {json.dumps(w)}" for w in self.cluster.warnings)
        return json_response(obj, status, headers)

    @staticmethod
    def _predicate(rt: ResourceType, query: Any) -> Any:
        labels = selectors.label_matcher(query.get("labelSelector"))
        fields = selectors.field_matcher(query.get("fieldSelector"), rt.plural)
        return lambda obj: labels(obj) and fields(obj)

    # --------------------------------------------------------------------------------- control

    async def _control(self, request: web.Request) -> web.Response:
        path = request.path[len(CONTROL_PREFIX):].strip("/")
        method = request.method
        if path == "healthz":
            return json_response({"ok": True, "url": self.url})
        if path == "faults" and method == "POST":
            rule = await request.json()
            if not isinstance(rule, dict):
                raise ValueError("a fault rule is a JSON object")
            return json_response(self.faults.add(**rule).to_json(), 201)
        if path == "faults" and method == "GET":
            return json_response({"faults": self.faults.list()})
        if path == "faults" and method == "DELETE":
            self.faults.clear()
            return json_response({"ok": True})
        if path.startswith("faults/") and method == "DELETE":
            found = self.faults.remove(path.split("/", 1)[1])
            return json_response({"ok": found}, 200 if found else 404)
        if path == "requests" and method == "GET":
            match = {k: (int(v) if k == "status" else v) for k, v in request.query.items()}
            return json_response({"requests": self.requests.records(**match)})
        if path == "requests" and method == "DELETE":
            self.requests.clear()
            return json_response({"ok": True})
        if path == "config" and method in ("GET", "PUT", "PATCH"):
            if method != "GET":
                config = await request.json()
                if "watchHistoryLimit" in config:
                    self.cluster.store.history_limit = int(config["watchHistoryLimit"])
                if "bookmarkInterval" in config:
                    self.bookmark_interval = float(config["bookmarkInterval"])
            return json_response(
                {"watchHistoryLimit": self.cluster.store.history_limit, "bookmarkInterval": self.bookmark_interval}
            )
        return json_response(status_body(404, f"no sandbox control endpoint {request.path}", "NotFound"), 404)


class Sandbox:
    """A SandboxServer in a background thread on a free loopback port (a context manager).

    >>> with Sandbox(crd_paths=[Path("tests/fixtures/widgets.yaml")]) as sandbox:
    ...     sandbox.faults.add(verbs=["update", "patch"], resource="configmaps", every=3, status=409)
    ...     sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: SandboxServer | None = None
        self._done: asyncio.Event | None = None

    @property
    def server(self) -> SandboxServer:
        """The running server (its cluster, faults and request log)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT."""
        return self.server.url

    @property
    def faults(self) -> FaultInjector:
        """Fault rules (thread-safe)."""
        return self.server.faults

    @property
    def requests(self) -> RequestLog:
        """The request log (thread-safe)."""
        return self.server.requests

    def set_history_limit(self, limit: int) -> None:
        """How many events per resource the watch history keeps (tiny values test 410 Gone)."""
        self.server.cluster.store.history_limit = limit

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this sandbox (context `sandbox`)."""
        return write_kubeconfig(Path(path), self.url)

    def start(self) -> Sandbox:
        """Start the server thread; return once it serves."""
        self._thread = threading.Thread(target=self._run, name="featurerollout-sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise RuntimeError(f"the sandbox failed to start: {self._error}") from self._error
        if self._server is None:
            raise RuntimeError("the sandbox did not start within 30 s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._done = asyncio.Event()
        try:
            server = SandboxServer(**self._options)
            await server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._server = server
        self._ready.set()
        await self._done.wait()
        await server.stop()

    def stop(self) -> None:
        """Stop the server and join its thread."""
        if self._loop is not None and self._done is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._done.set)
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
