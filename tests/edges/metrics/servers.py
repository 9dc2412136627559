"""Small loopback servers for the provider tests: an exporter, a slow server and an auth proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from tests.support.prometheus import free_port


@contextlib.contextmanager
def exporter(registry: CollectorRegistry) -> Iterator[int]:
    """Serve `registry` on /metrics at a free loopback port (a thread); yields the port."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def sample_registry() -> CollectorRegistry:
    """Gauges that the provider tests query: one series, three series, and one with rollout labels."""
    registry = CollectorRegistry()
    Gauge("fr_test_gauge", "one series", registry=registry).set(0.25)
    multi = Gauge("fr_test_multi", "three series", ["shard"], registry=registry)
    for shard, value in (("a", 1), ("b", 2), ("c", 3)):
        multi.labels(shard=shard).set(value)
    labeled = Gauge("fr_test_labeled", "labels as a rollout's", ["flag", "rollout", "ns"], registry=registry)
    labeled.labels(flag="new-checkout", rollout="checkout-rollout", ns="shop").set(0.5)
    labeled.labels(flag="other-flag", rollout="other", ns="shop").set(7)
    return registry


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free loopback port in this event loop; yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def slow_prometheus(delay: float) -> AsyncIterator[str]:
    """A server whose /api/v1/query answers only after `delay` seconds (or at teardown)."""
    release = asyncio.Event()

    async def query(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), delay)
        return web.json_response({"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    async with serve(app) as url:
        try:
            yield url
        finally:
            release.set()


@dataclass
class AuthProxy:
    """What the proxy saw: the headers of every request it forwarded or refused."""

    url: str = ""
    seen: list[Mapping[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def auth_proxy(upstream: str, required: Mapping[str, str]) -> AsyncIterator[AuthProxy]:
    """A reverse proxy to `upstream` that answers 401 unless every `required` header has its value."""
    proxy = AuthProxy()

    async def forward(request: web.Request) -> web.Response:
        proxy.seen.append(dict(request.headers))
        for name, value in required.items():
            if request.headers.get(name) != value:
                return web.Response(status=401, text=f"missing or wrong {name}\n")
        async with aiohttp.ClientSession() as session, session.request(
            request.method, upstream + request.path_qs, data=await request.read()
        ) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type=answer.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with serve(app) as url:
        proxy.url = url
        yield proxy
