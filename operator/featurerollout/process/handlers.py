"""The Kopf wiring: thin, no decisions.

Kopf watches FeatureRollouts and tells the central schedule when one appears, changes in a way
that needs a look (a new generation, a new manual request), or goes. The schedule calls the
reconciler when each rollout is due. No handler here writes to the API, and no finalizer is
added: deleting a FeatureRollout never waits for the operator (see README, "Deletion").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import kopf

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.core.manual_requests import REQUEST_ANNOTATION
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES
from featurerollout.edges.kube import Kube, load_config
from featurerollout.edges.metrics.batcher import QueryBatcher
from featurerollout.edges.notify import Notifier, kube_secrets
from featurerollout.edges.targets.webhook import WebhookClients
from featurerollout.process.leader import Elector
from featurerollout.process.reconciler import Guard, Reconciler, RolloutKey
from featurerollout.process.scheduler import Scheduler
from featurerollout.process.sharding import Shard

log = logging.getLogger("featurerollout")

Fingerprint = tuple[object, ...]


def fingerprint(body: dict[str, Any]) -> Fingerprint:
    """What, in an object, calls for a look when it changes. Our own status writes change none
    of it, so they do not wake the rollout again."""
    metadata = body.get("metadata", {})
    return (
        metadata.get("generation"),
        (metadata.get("annotations") or {}).get(REQUEST_ANNOTATION),
        metadata.get("deletionTimestamp"),
    )


@dataclass
class OperatorState:
    """What the operator holds while it runs: the schedule and the last fingerprint of each rollout.
    It is all rebuilt from the API on start."""

    kube: Kube
    concurrency: int = 64
    resync: float = 300.0
    scheduler: Scheduler[RolloutKey] = field(init=False)
    fingerprints: dict[RolloutKey, Fingerprint] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    webhooks: WebhookClients = field(default_factory=WebhookClients)
    prometheus_address: str | None = None  # --prometheus-address
    notifier: Notifier = field(init=False)
    # Leader election (leader.py; None with --standalone): the schedule runs only while leading;
    # the watch, the fingerprints and the schedule's keys stay warm in a standby.
    elector: Elector | None = None
    guard: Guard | None = None
    shard: Shard | None = None  # --shard: only this slice of the rollouts is scheduled at all
    election: asyncio.Task[None] | None = None

    query_batching: bool = True  # --no-query-batching turns it off (metrics/batcher.py)
    analysis_status_every: float = 0.0  # --analysis-status-every (statuswrites.py)
    max_answer_bytes: int = MAX_ANSWER_BYTES  # --max-response-bytes (edges/http_bodies.py)
    queries: QueryBatcher | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.notifier = Notifier(kube_secrets(self.kube))
        self.queries = QueryBatcher() if self.query_batching else None
        reconciler = Reconciler(self.kube, resync=self.resync, webhooks=self.webhooks, notifier=self.notifier,
                                prometheus_address=self.prometheus_address, guard=self.guard,
                                queries=self.queries, analysis_status_every=self.analysis_status_every,
                                max_answer_bytes=self.max_answer_bytes)
        if self.elector is not None:
            elector = self.elector
            reconciler.leading = lambda: elector.leading
            reconciler.guard_recheck = elector.settings.retry_period
            elector.on_started = self._lead
            elector.on_stopped = self._follow
        self.scheduler = Scheduler(reconciler, concurrency=self.concurrency)

    def start(self) -> None:
        self.notifier.start()
        if self.elector is None:
            self._lead()
        else:
            self.election = asyncio.get_running_loop().create_task(self.elector.run(), name="featurerollout-election")

    def _lead(self) -> None:
        """Start acting: a fresh look at every rollout the watch knows (no relist needed)."""
        if self.task is not None and not self.task.done():
            return
        for key in self.scheduler.keys:
            self.scheduler.wake(key)
        self.task = asyncio.get_running_loop().create_task(self.scheduler.run(), name="featurerollout-scheduler")

    def _follow(self) -> None:
        """Stop acting at once: the looks in flight are cancelled (a write already sent is fenced by
        its resourceVersion)."""
        if self.task is not None:
            self.task.cancel()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.elector is not None:
            if self.election is not None:
                self.election.cancel()
                await asyncio.gather(self.election, return_exceptions=True)
            await self.elector.release()
        await self.notifier.aclose()  # what is queued gets a moment to go out
        await self.webhooks.aclose()
        if self.queries is not None:
            await self.queries.aclose()
        self.kube.close()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event about one FeatureRollout."""
        metadata = body.get("metadata", {})
        key: RolloutKey = (metadata.get("namespace", "default"), metadata.get("name", ""))
        if self.shard is not None and not self.shard.covers(*key):
            return  # another shard's rollout
        if event_type == "DELETED":
            self.fingerprints.pop(key, None)
            self.scheduler.forget(key)
            return
        mark = fingerprint(body)
        if self.fingerprints.get(key) == mark:
            return
        self.fingerprints[key] = mark
        self.scheduler.wake(key)


def connection_info(
    settings: kopf.OperatorSettings, kubeconfig: str | None, context: str | None
) -> kopf.ConnectionInfo:
    """Kopf's credentials, from the same kubeconfig (or service account) as the client's.

    Kopf's own `login_via_client` reads only the default kubeconfig, fixed when the client is
    imported, so `--kubeconfig` and `--context` would not reach it.
    """
    from kubernetes import client

    load_config(kubeconfig, context)
    config = client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        trust_env=settings.networking.trust_env,
    )


def build_registry(
    state: OperatorState, *, kubeconfig: str | None = None, context: str | None = None,
    metrics_port: int | None = None,
) -> kopf.OperatorRegistry:
    """A Kopf registry with the operator's handlers bound to `state`. `metrics_port`: None serves no
    metrics; 0 a free port (logged)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Kopf would otherwise turn its own log lines into Events: we post ours ourselves.
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        if metrics_port is not None:
            from prometheus_client import start_http_server

            server, _thread = start_http_server(metrics_port)
            log.info("serving the operator's metrics on :%d/metrics", server.server_port)
        state.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await state.stop()

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        return connection_info(settings, kubeconfig, context)

    @kopf.on.probe(id="scheduled", registry=registry)
    def scheduled(**_: Any) -> int:
        return len(state.scheduler.keys)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        state.observe(event.get("type"), dict(body))

    return registry
