"""One look at one rollout: read it, measure if due, ask the engine, apply, record.

This is the edge where the engine's decisions meet the world, in the order that keeps users
safe and the record honest:

1. read the object fresh from the API (the schedule may be ahead of the watch);
2. read what the target holds for the flag (its weight and owner marker): a flag that another
   live FeatureRollout owns is never written; drift from the status is the engine's to put right;
3. measure every metric when the engine says analysis is due;
4. `engine.decide()`;
5. apply its SetWeight through the target first: a rollback reaches users before anything else;
   if the target refuses, `engine.target_failed()` records the old weight and why;
6. write the status, only when it changed, as a merge patch that names every removed field
   (mergepatch.py says why), guarded by the resourceVersion that was read (a 409 means someone
   changed the object meanwhile: look again at once; but once the target was written, the same
   status is written onto the fresh object, so that the record always holds what the target does);
7. then post the Events and the log line, so an Event never claims what the status does not hold.

Every rollout is looked at again at least every `resync` seconds, even one that is finished or
waiting for a person, so that drift on its target is found and put right.

Everything the next look needs is in the status, nothing in memory: a restarted operator carries
on from the same stage with the same stage clock and re-emits no old Event.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout import api, engine, mergepatch, statuswrites, telemetry
from featurerollout.control import BadRequest, parse_request
from featurerollout.events import post_event
from featurerollout.kube import CONFLICT, NOT_FOUND, Kube, api_message, status_code
from featurerollout.measurement import Measurement
from featurerollout.metrics import provider_for
from featurerollout.metrics.batcher import BatchedProvider, QueryBatcher
from featurerollout.metrics.prometheus import (
    InvalidCredentials,
    PrometheusCredentials,
    PrometheusMetricProvider,
    credentials_from_secret,
)
from featurerollout.metrics.provider import MetricProvider, measure_all
from featurerollout.targets import Target, TargetError, target_for
from featurerollout.targets.base import Owner, check_owner
from featurerollout.targets.webhook import WebhookClients

log = logging.getLogger("featurerollout")

RolloutKey = tuple[str, str]  # (namespace, name)
# Status writes retried on 409 after the target was written (someone else wrote the object between).
STATUS_CONFLICT_RETRIES = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_wire(status: api.FeatureRolloutStatus) -> dict[str, Any]:
    """The status as the API stores it, for writing and for comparing with what is stored."""
    return status.to_wire()


async def write_status(kube: Kube, body: dict[str, Any], status: api.FeatureRolloutStatus) -> bool:
    """Make the stored status of `body` (as read) equal `status`: a merge patch naming every field
    to remove, guarded by the resourceVersion read. Returns whether anything was written; raises
    the API's error (409 Conflict when the object changed since it was read)."""
    patch = mergepatch.diff(body.get("status") or {}, status_wire(status))
    if not patch:
        return False
    metadata = body.get("metadata", {})
    await kube.patch_rollout_status(
        metadata.get("namespace", "default"), metadata["name"], patch, metadata.get("resourceVersion")
    )
    return True


@dataclass
class Reconciler:
    """The scheduler's work: one look at one rollout; returns when (monotonic) to look again."""

    kube: Kube
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    resync: float = 300.0  # seconds: the longest a rollout goes without a look at its target
    webhooks: WebhookClients = field(default_factory=WebhookClients)  # one HTTP pool per operator
    # One round of queries per Prometheus for the rollouts due together (None: --no-query-batching,
    # one provider and one query per rollout and metric).
    queries: QueryBatcher | None = None
    # --analysis-status-every: an evaluation that changes no verdict is written only once the stored
    # one is this many seconds old (statuswrites.py); 0 writes every evaluation.
    analysis_status_every: float = 0.0

    async def __call__(self, key: RolloutKey) -> float | None:
        started = time.perf_counter()
        try:
            return await self.reconcile(key)
        finally:
            telemetry.reconcile_seconds.observe(time.perf_counter() - started)

    async def reconcile(self, key: RolloutKey) -> float | None:
        namespace, name = key
        try:
            body = await self.kube.get_rollout(namespace, name)
        except Exception as error:
            if status_code(error) == NOT_FOUND:
                telemetry.forget(namespace, name)
                return None
            raise
        metadata = body.get("metadata", {})
        if metadata.get("deletionTimestamp"):
            return None
        meta = api.ObjectMeta.model_validate(metadata)
        status = api.FeatureRolloutStatus.model_validate(body.get("status") or {})
        try:
            request = parse_request(meta.annotations)
        except BadRequest as bad:
            log.warning("%s/%s: ignoring the request annotation: %s", namespace, name, bad)
            request = None
        try:
            spec = api.parse_spec(body.get("spec") or {}, name)
        except api.InvalidFeatureRollout as invalid:
            # The API server's schema should have refused it; an older CRD may not have.
            decision = engine.cannot_proceed(
                None, status, generation=meta.generation, now=self.clock(), reason="InvalidSpec",
                message=str(invalid), request=request,
            )
            return await self._record(body, None, meta, status, decision)

        owner = Owner(meta.namespace, meta.name, meta.uid or "")
        observed: engine.Observed | None = None
        read_error: TargetError | None = None
        replacing: Owner | None = None
        if status.phase != api.Phase.FAILED or request is not None:
            try:
                target = target_for(self.kube, meta.namespace, where_it_lives(spec, status), rollout=meta.name,
                                    webhooks=self.webhooks)
                holding = await target.holding()
                if holding.owner is not None and holding.owner.uid != owner.uid:
                    if await self._alive(holding.owner):
                        # Another live rollout drives this flag: never write it, say so, look again later.
                        try:
                            check_owner(target.describe(), spec.flag, holding.owner, owner, None)
                        except TargetError as refused:
                            decision = engine.target_failed(
                                status, generation=meta.generation, now=self.clock(), reason=refused.reason,
                                message=refused.message, request=request,
                            )
                            return await self._record(body, spec, meta, status, decision)
                    replacing = holding.owner  # its rollout is gone: the flag is free to take over
                # Only a target that reads back what it holds can show drift (a webhook cannot).
                observed = engine.Observed(holding.weight, target.describe()) if target.reads_back else None
            except TargetError as error:
                read_error = error

        measurements: dict[str, Measurement] | None = None
        if engine.analysis_due(spec, status, (measuring := self.clock())):
            if status.last_analysis_at is not None and spec.analysis is not None:
                due = status.last_analysis_at + spec.analysis.every
                telemetry.analysis_lag.observe(max(0.0, (measuring - due).total_seconds()))
            measurements = await self._measure(spec, meta, status)

        now = self.clock()
        decision = engine.decide(
            spec, status, generation=meta.generation, now=now, measurements=measurements, request=request,
            observed=observed,
        )
        writes = any(isinstance(a, engine.SetWeight) for a in decision.actions)
        if read_error is not None and not writes:
            # The target could not be read (gone, broken JSON): say so, as a failed write would.
            decision = engine.target_failed(
                status, generation=meta.generation, now=now, reason=read_error.reason,
                message=read_error.message, request=request,
            )
            return await self._record(body, spec, meta, status, decision)
        decision = await self._apply(spec, meta, status, decision, now, owner, replacing, request)
        return await self._record(body, spec, meta, status, decision)

    async def _alive(self, owner: Owner) -> bool:
        """Does the FeatureRollout a marker names still exist (same uid)? A deleted owner (there is no
        finalizer) leaves its marker behind; this is how it releases the flag. An error answers
        yes: never take a flag over on a guess."""
        try:
            body = await self.kube.get_rollout(owner.namespace, owner.name)
        except Exception as error:
            return status_code(error) != NOT_FOUND
        return bool(body.get("metadata", {}).get("uid") == owner.uid)

    async def _record(
        self,
        body: dict[str, Any],
        spec: api.FeatureRolloutSpec | None,
        meta: api.ObjectMeta,
        before: api.FeatureRolloutStatus,
        decision: engine.Decision,
    ) -> float | None:
        """Write the status if it changed, then announce; returns when to look again."""
        now = self.clock()
        wrote_target = any(isinstance(a, engine.SetWeight) for a in decision.actions)
        if not wrote_target and not statuswrites.worth_writing(
            body.get("status") or {}, status_wire(decision.status), now, timedelta(seconds=self.analysis_status_every)
        ):
            telemetry.status_writes_deferred.inc()
            await self._announce(body, spec, meta, before, decision, now)
            return self._due(decision.next_check, now)
        for attempt in range(STATUS_CONFLICT_RETRIES + 1):
            try:
                if await write_status(self.kube, body, decision.status):
                    telemetry.status_writes.inc()
                break
            except Exception as error:
                code = status_code(error)
                if code == CONFLICT and wrote_target and attempt < STATUS_CONFLICT_RETRIES:
                    # The target already holds the decided weight: that must be on record, or the
                    # next look would take our own write for someone else's edit (drift). Write
                    # the same status onto the object as it is now; a spec change or a request
                    # that came meanwhile is decided at the next look.
                    try:
                        body = await self.kube.get_rollout(meta.namespace, meta.name)
                    except Exception as gone:
                        if status_code(gone) == NOT_FOUND:
                            return None
                        raise
                    continue
                if code in (CONFLICT, NOT_FOUND):
                    # Changed or gone since we read it, and nothing was written: decide again on
                    # what is there now.
                    return self.monotonic()
                raise
        await self._announce(body, spec, meta, before, decision, now)
        return self._due(decision.next_check, now)

    async def _measure(
        self, spec: api.FeatureRolloutSpec, meta: api.ObjectMeta, status: api.FeatureRolloutStatus
    ) -> dict[str, Measurement]:
        analysis = spec.analysis
        assert analysis is not None
        # {{window}}: the stage so far, for the counts a compare metric's sequential test needs.
        window = self.clock() - status.stage_started_at if status.stage_started_at is not None else None
        try:
            credentials = await self._credentials(analysis.prometheus, meta.namespace)
        except InvalidCredentials as error:
            return {m.name: Measurement.error(str(error)) for m in analysis.metrics}
        provider: MetricProvider
        if self.queries is not None:
            spec_p, creds = analysis.prometheus, credentials
            key = (spec_p.model_dump_json(), creds)  # in memory only: credentials never leave it
            shared = self.queries.provider(key, lambda: PrometheusMetricProvider(spec_p, creds))
            provider = BatchedProvider(self.queries, key, shared)
        else:
            provider = provider_for(analysis.prometheus, credentials)
        try:
            return await measure_all(
                provider, analysis.metrics, flag=spec.flag, name=meta.name, namespace=meta.namespace,
                interval=analysis.interval, window=window,
            )
        finally:
            await provider.aclose()

    async def _credentials(self, spec: api.PrometheusProvider, namespace: str) -> PrometheusCredentials | None:
        if spec.auth is None:
            return None
        where = f"Secret {namespace}/{spec.auth.secret_name} (spec.analysis.prometheus.auth)"
        try:
            secret = await self.kube.call(self.kube.core.read_namespaced_secret, spec.auth.secret_name, namespace)
        except Exception as error:
            raise InvalidCredentials(f"{where}: {api_message(error)}") from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        try:
            return credentials_from_secret(data)
        except InvalidCredentials as error:
            raise InvalidCredentials(f"{where}: {error}") from None

    async def _apply(
        self,
        spec: api.FeatureRolloutSpec,
        meta: api.ObjectMeta,
        before: api.FeatureRolloutStatus,
        decision: engine.Decision,
        now: datetime,
        owner: Owner,
        replacing: Owner | None,
        request: engine.ControlRequest | None,
    ) -> engine.Decision:
        for action in decision.actions:
            if not isinstance(action, engine.SetWeight):
                continue
            try:
                target: Target = target_for(self.kube, meta.namespace, where_it_lives(spec, decision.status),
                                            rollout=meta.name, webhooks=self.webhooks)
                target.claim(owner, replacing)
                await target.apply(action.weight)
            except TargetError as error:
                telemetry.target_errors.labels(meta.namespace, meta.name, error.reason).inc()
                if action.weight == 0 and decision.status.phase == api.Phase.ROLLED_BACK:
                    # A rollback stands even when the target refuses its 0%: it is retried.
                    return engine.rollback_not_applied(
                        decision, before, generation=meta.generation, now=now, reason=error.reason,
                        message=error.message,
                    )
                return engine.target_failed(
                    before, generation=meta.generation, now=now, reason=error.reason, message=error.message,
                    request=request,
                )
            if decision.status.stage_started_at == now:
                # A stage holds from the moment the target really holds its weight, which is now
                # that the write returned, not when the decision was taken.
                decision = engine.held_from(spec, decision, self.clock(), meta.generation)
        return decision

    async def _announce(
        self,
        body: dict[str, Any],
        spec: api.FeatureRolloutSpec | None,
        meta: api.ObjectMeta,
        before: api.FeatureRolloutStatus,
        decision: engine.Decision,
        now: datetime,
    ) -> None:
        after = decision.status
        for action in decision.actions:
            if isinstance(action, engine.EmitEvent):
                await post_event(self.kube, body["metadata"], action.type, action.reason, action.message, now)
        if decision.log:
            level = logging.WARNING if after.phase in (api.Phase.ROLLED_BACK, api.Phase.FAILED) else logging.INFO
            log.log(level, "%s/%s: %s", meta.namespace, meta.name, decision.log)
        if after.phase == api.Phase.ROLLED_BACK and before.phase != api.Phase.ROLLED_BACK:
            degraded = after.condition("Degraded")
            telemetry.rollbacks.labels(meta.namespace, meta.name, degraded.reason if degraded else "Unknown").inc()
        if after.current_stage > before.current_stage and after.phase != api.Phase.ROLLED_BACK:
            telemetry.promotions.labels(meta.namespace, meta.name).inc()
        if after.last_analysis_at is not None and after.last_analysis_at != before.last_analysis_at:
            for metric in after.metrics:  # only the evaluations this look made
                if metric.result == api.MetricResult.ERROR and metric.evaluated_at == after.last_analysis_at:
                    telemetry.analysis_errors.labels(meta.namespace, meta.name, metric.name).inc()
        telemetry.observe(meta.namespace, meta.name, spec.flag if spec else "", after)

    def _due(self, next_check: datetime | None, now: datetime) -> float | None:
        # The wall-clock moment turned into a monotonic one against the clock as it is NOW, after the
        # status write and the Events: measured from `now` (before them), every look's write time
        # was added to the next one's wait, so an analysis every 10 s came every 10 s + a write.
        if next_check is None:
            return self.monotonic() + self.resync
        delay = min((next_check - self.clock()).total_seconds(), self.resync - (self.clock() - now).total_seconds())
        return self.monotonic() + max(0.0, delay)


def where_it_lives(spec: api.FeatureRolloutSpec, status: api.FeatureRolloutStatus) -> api.FeatureRolloutSpec:
    """The spec with the flag and target where the rollout's exposure lives (status.target, the ones
    it last wrote) once it started; the spec's own before. A change of target while active is
    refused by the engine (abort first), so an abort always reaches the exposed copy."""
    ref = status.target
    if ref is None or status.phase == api.Phase.PENDING:
        return spec
    return spec.model_copy(update={"flag": ref.flag, "target": ref.target})
