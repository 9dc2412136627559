"""Leader election on a `coordination.k8s.io/v1` Lease, and the per-rollout claim that makes
shards safe: the edge where several operator processes agree on who acts.

The decisions about the Lease (is it free, expired, ours to renew) are the `kubernetes`
client's own `leaderelection` module: `LeaderElection.try_acquire_or_renew` over its
`LeaseLock`, which reads the Lease and replaces it with the resourceVersion it read, so the API
server's compare-and-swap decides between candidates. Expiry is judged, as in client-go, by this
process's clock from the moment it saw the record change, never by comparing clocks across
hosts. What this module adds around it, and why (docs/high-availability.md):

- the loop runs on the event loop (each attempt in one worker thread), not in the module's
  blocking `run()`, which cannot be stopped and never releases the Lease;
- leadership is valid only until `renew_deadline` after the start of the last successful
  attempt, checked before every write (`leading`), so a leader whose renewals hang stops acting
  before anyone else may take the Lease (`lease_duration > renew_deadline`);
- a standby tries every `retry_period / 4`, so that a Lease released by a graceful stop is taken
  within about half a second, and an expired one within `lease_duration` plus that;
- `release()` on shutdown empties `holderIdentity` (as client-go's ReleaseOnCancel does), guarded
  by the resourceVersion read, so the Lease is never taken from a successor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from featurerollout.edges import telemetry
from featurerollout.edges.kube import CONFLICT, NOT_FOUND, Kube, api_message, status_code
from featurerollout.process.sharding import Claim, Shard, claim_action

log = logging.getLogger("featurerollout.process.leader")

# The most the release on shutdown waits for the API server: a process that cannot release the Lease
# gives up (it expires by itself) so that it still exits within runner.EXIT_DEADLINE.
RELEASE_TIMEOUT = 5.0
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class InvalidTimings(ValueError):
    """Lease timings that cannot work together; the message names the flag."""


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        check_timings(self.lease_duration, self.renew_deadline, self.retry_period)


def check_timings(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """The rules of the client's `electionconfig.Config` (which would `sys.exit` on a bad value),
    as an error naming the flag."""
    if retry_period < 1:
        raise InvalidTimings(f"--retry-period {retry_period:g}: must be at least 1 (second)")
    if renew_deadline <= 1.2 * retry_period:
        raise InvalidTimings(
            f"--renew-deadline {renew_deadline:g}: must be more than 1.2 x --retry-period ({1.2 * retry_period:g})"
        )
    if lease_duration <= renew_deadline:
        raise InvalidTimings(
            f"--lease-duration {lease_duration:g}: must be more than --renew-deadline ({renew_deadline:g}), so "
            "that a leader that cannot renew stops acting before another may take the Lease"
        )
    if lease_duration != int(lease_duration):
        raise InvalidTimings(
            f"--lease-duration {lease_duration:g}: must be whole seconds (the Lease stores an integer)"
        )


def default_identity(environ: dict[str, str] | None = None) -> str:
    """The pod's name (POD_NAME, from the downward API), else `hostname-pid`."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def default_namespace(environ: dict[str, str] | None = None) -> str:
    """The pod's namespace (POD_NAMESPACE, else the service account's), else `default`."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class LibraryFailures(logging.Filter):
    """The client's leader election logs every try at INFO, its failures too ("Failed to create
    lock as (404) ..."). Keep only the failures, as one-line warnings: a Lease that cannot be
    written (no namespace, no RBAC) must show in the log, not a routine "lease held by X"."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(("Failed to", "Error retrieving")):
            return False
        record.msg, record.args = message.splitlines()[0], None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _TimedCoordination(client.CoordinationV1Api):
    """The Lease calls LeaseLock makes, each with a timeout: a hung call must not hold the loop."""

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        super().__init__(api)
        self._timeout = timeout

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self._timeout)
        return super().read_namespaced_lease(*args, **kwargs)

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self._timeout)
        return super().create_namespaced_lease(*args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self._timeout)
        return super().replace_namespaced_lease(*args, **kwargs)


def _nothing() -> None:
    """The library's callbacks: unused, since this module runs the loop itself."""


@dataclass
class Elector:
    """Campaigns for one Lease for as long as `run()` runs; calls `on_started` when this process
    becomes leader and `on_stopped` when it stops being leader (both on the event loop)."""

    settings: LeaseSettings
    api: client.ApiClient
    on_started: Callable[[], None] = _nothing
    on_stopped: Callable[[], None] = _nothing
    clock: Callable[[], float] = time.monotonic
    _leading: bool = False
    _valid_until: float = 0.0
    _expiry: asyncio.TimerHandle | None = None
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "lease"))

    def __post_init__(self) -> None:
        s = self.settings
        self.coordination = _TimedCoordination(self.api, max(1.0, s.retry_period))
        lock = LeaseLock(s.name, s.namespace, s.identity)
        lock.api_instance = self.coordination
        config = electionconfig.Config(
            # Whole seconds (checked): the library writes str(lease_duration) and reads it as int.
            lock, int(s.lease_duration), s.renew_deadline, s.retry_period, onstarted_leading=_nothing,
            onstopped_leading=_nothing,
        )
        self.election = leaderelection.LeaderElection(config)
        telemetry.leader.labels(s.name).set(0)
        telemetry.leader_transitions.labels(s.name)  # a standby shows 0, not nothing

    @property
    def leading(self) -> bool:
        """Whether this process may act now: it holds the Lease and renewed it recently enough."""
        return self._leading and self.clock() < self._valid_until

    async def _attempt(self) -> bool:
        started = self.clock()
        loop = asyncio.get_running_loop()
        try:
            done = await asyncio.wait_for(
                loop.run_in_executor(self._pool, self.election.try_acquire_or_renew), self.settings.retry_period * 2
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an API error is a failed attempt; the loop goes on
            log.warning("Lease %s/%s: %s", self.settings.namespace, self.settings.name, api_message(error))
            return False
        if done:
            self._valid_until = started + self.settings.renew_deadline
        return bool(done)

    async def run(self) -> None:
        """Campaign, lead, renew; until cancelled."""
        s = self.settings
        try:
            while True:
                while not await self._attempt():
                    await asyncio.sleep(s.retry_period / 4)
                self._start_leading()
                while self.leading:
                    await asyncio.sleep(s.retry_period)
                    while self.leading and not await self._attempt():
                        await asyncio.sleep(min(s.retry_period, max(0.0, self._valid_until - self.clock())))
                self._stop_leading("could not renew the Lease within --renew-deadline")
        finally:
            self._stop_leading("shutting down")

    def _start_leading(self) -> None:
        s = self.settings
        self._leading = True
        telemetry.leader.labels(s.name).set(1)
        telemetry.leader_transitions.labels(s.name).inc()
        log.info("%s: became the leader of Lease %s/%s", s.identity, s.namespace, s.name)
        self._arm_expiry()
        self.on_started()

    def _arm_expiry(self) -> None:
        """Stop acting the moment leadership runs out, even while an attempt hangs."""
        if self._expiry is not None:
            self._expiry.cancel()
        if not self._leading:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            if self._leading and not self.leading:
                self._stop_leading("could not renew the Lease within --renew-deadline")
            elif self._leading:
                self._arm_expiry()

        self._expiry = loop.call_later(max(0.0, self._valid_until - self.clock()) + 0.01, check)

    def _stop_leading(self, why: str) -> None:
        if not self._leading:
            return
        s = self.settings
        self._leading = False
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        telemetry.leader.labels(s.name).set(0)
        telemetry.leader_transitions.labels(s.name)  # a standby shows 0, not nothing
        log.warning("%s: stopped leading Lease %s/%s: %s", s.identity, s.namespace, s.name, why)
        self.on_stopped()

    async def release(self) -> None:
        """Give the Lease up at once if this process holds it (after it stopped acting), so that a
        standby takes over within its next try instead of waiting for the Lease to expire."""
        s = self.settings
        self._stop_leading("shutting down")

        def give_up() -> bool:
            try:
                lease = self.coordination.read_namespaced_lease(s.name, s.namespace)
            except client.ApiException as error:
                if status_code(error) == NOT_FOUND:
                    return False
                raise
            if lease.spec is None or lease.spec.holder_identity != s.identity:
                return False
            now = datetime.now(UTC)
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.acquire_time = now
            lease.spec.renew_time = now
            # The body carries the resourceVersion read: if a successor wrote since, this fails.
            self.coordination.replace_namespaced_lease(s.name, s.namespace, lease)
            return True

        loop = asyncio.get_running_loop()
        try:
            released = await asyncio.wait_for(
                loop.run_in_executor(self._pool, give_up), min(s.retry_period * 2, RELEASE_TIMEOUT)
            )
        except Exception as error:
            log.warning("Lease %s/%s: could not release it (it expires by itself): %s", s.namespace, s.name,
                        api_message(error))
        else:
            if released:
                log.info("%s: released Lease %s/%s", s.identity, s.namespace, s.name)
        finally:
            self._pool.shutdown(wait=False)


@dataclass
class LeaseObserver:
    """Whether other Leases (named in rollouts' claims) are held, by this process's clock: a Lease
    is held until its holder is empty, it is gone, or its record has not changed for its whole
    duration since this process first saw that record."""

    coordination: Any
    namespace: str
    clock: Callable[[], float] = time.monotonic
    recheck: float = 1.0  # seconds a look at one Lease is reused for
    _seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> (resourceVersion, first seen)
    _answers: dict[str, tuple[bool, float]] = field(default_factory=dict)  # name -> (held, when)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "leases"))

    async def held(self, name: str) -> bool:
        now = self.clock()
        cached = self._answers.get(name)
        if cached is not None and now - cached[1] < self.recheck:
            return cached[0]
        answer = await self._look(name, now)
        self._answers[name] = (answer, now)
        return answer

    async def _look(self, name: str, now: float) -> bool:
        loop = asyncio.get_running_loop()
        try:
            lease = await loop.run_in_executor(
                self._pool, lambda: self.coordination.read_namespaced_lease(name, self.namespace)
            )
        except Exception as error:
            # Gone: not held. Anything else is unknown: never take a rollout over on a guess.
            return status_code(error) != NOT_FOUND
        spec = lease.spec
        if spec is None or not spec.holder_identity:
            return False
        version = str(lease.metadata.resource_version)
        seen = self._seen.get(name)
        if seen is None or seen[0] != version:
            self._seen[name] = (version, now)
            return True
        # One second more than the Lease says: its duration is whole seconds, ours may not be.
        return now - seen[1] < (spec.lease_duration_seconds or 15) + 1


@dataclass
class OwnershipGuard:
    """The reconciler's gate: act on a rollout only while leading, only on this shard's rollouts,
    and only once the rollout's claim (`status.shardLease`) names this process's Lease."""

    elector: Elector
    kube: Kube
    observer: LeaseObserver
    shard: Shard | None = None
    _waiting: set[tuple[str, str]] = field(default_factory=set)

    @property
    def lease(self) -> str:
        return self.elector.settings.name

    def leading(self) -> bool:
        return self.elector.leading

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The object to act on (after claiming it if needed), or None: not ours now."""
        if not self.elector.leading:
            return None
        metadata = body.get("metadata", {})
        key = (metadata.get("namespace", "default"), metadata.get("name", ""))
        if self.shard is not None and not self.shard.covers(*key):
            return None
        claimed = (body.get("status") or {}).get("shardLease")
        alive = None if not claimed or claimed == self.lease else await self.observer.held(claimed)
        action = claim_action(claimed, self.lease, alive)
        if action == Claim.ACT:
            self._waiting.discard(key)
            return body
        if action == Claim.WAIT:
            if key not in self._waiting:
                self._waiting.add(key)
                log.info("%s/%s: claimed by Lease %s, which is still held; waiting for it to be released or "
                         "to expire", *key, claimed)
            return None
        if not self.elector.leading:
            return None
        try:
            claimed_body = await self.kube.patch_rollout_status(
                key[0], key[1], {"shardLease": self.lease}, metadata.get("resourceVersion")
            )
        except Exception as error:
            if status_code(error) in (CONFLICT, NOT_FOUND):
                return None  # someone wrote it meanwhile (perhaps another shard's claim): look again
            raise
        self._waiting.discard(key)
        if claimed:
            log.info("%s/%s: took over from Lease %s (released or expired)", *key, claimed)
        return claimed_body
