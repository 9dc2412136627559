"""One look at one rollout: read it, measure if due, ask the engine, apply, record.

This is the edge where the engine's decisions meet the world, in the order that keeps users
safe and the record honest:

1. read the object fresh from the API (the schedule may be ahead of the watch);
2. measure every metric when the engine says analysis is due;
3. `engine.decide()`;
4. apply its SetWeight through the target first: a rollback reaches users before anything else;
   if the target refuses, `engine.target_failed()` records the old weight and why;
5. write the status, only when it changed, guarded by the resourceVersion that was read (a 409
   means someone changed the object meanwhile: look again at once);
6. then post the Events and the log line, so an Event never claims what the status does not hold.

Everything the next look needs is in the status, nothing in memory: a restarted operator carries
on from the same stage with the same stage clock and re-emits no old Event.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurerollout import api, engine, telemetry
from featurerollout.control import BadRequest, parse_request
from featurerollout.events import post_event
from featurerollout.kube import CONFLICT, NOT_FOUND, Kube, api_message, status_code
from featurerollout.measurement import Measurement
from featurerollout.metrics import provider_for
from featurerollout.metrics.prometheus import (
    InvalidCredentials,
    PrometheusCredentials,
    credentials_from_secret,
)
from featurerollout.metrics.provider import measure_all
from featurerollout.targets import TargetError, target_for
from featurerollout.targets.base import UNSUPPORTED_TARGET

log = logging.getLogger("featurerollout")

RolloutKey = tuple[str, str]  # (namespace, name)


def utcnow() -> datetime:
    return datetime.now(UTC)


def status_wire(status: api.FeatureRolloutStatus) -> dict[str, Any]:
    """The status as the API stores it, for writing and for comparing with what is stored."""
    return status.to_wire()


@dataclass
class Reconciler:
    """The scheduler's work: one look at one rollout; returns when (monotonic) to look again."""

    kube: Kube
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic

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
            spec = api.parse_spec(body.get("spec") or {}, name)
        except api.InvalidFeatureRollout as invalid:
            # The API server's schema should have refused it; an older CRD may not have.
            decision = engine.cannot_proceed(
                None, status, generation=meta.generation, now=self.clock(), reason="InvalidSpec", message=str(invalid)
            )
            return await self._record(body, None, meta, status, decision)

        try:
            request = parse_request(meta.annotations)
        except BadRequest as bad:
            log.warning("%s/%s: ignoring the request annotation: %s", namespace, name, bad)
            request = None

        measurements: dict[str, Measurement] | None = None
        if engine.analysis_due(spec, status, self.clock()):
            measurements = await self._measure(spec, meta, status)

        now = self.clock()
        decision = engine.decide(
            spec, status, generation=meta.generation, now=now, measurements=measurements, request=request
        )
        decision = await self._apply(spec, meta, status, decision, now)
        return await self._record(body, spec, meta, status, decision)

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
        if status_wire(decision.status) != (body.get("status") or {}):
            try:
                await self.kube.patch_rollout_status(
                    meta.namespace, meta.name, status_wire(decision.status), meta.resource_version
                )
                telemetry.status_writes.inc()
            except Exception as error:
                if status_code(error) in (CONFLICT, NOT_FOUND):
                    # Changed or gone since we read it: decide again on what is there now. The
                    # target write, if any, is idempotent and will be found done.
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
    ) -> engine.Decision:
        for action in decision.actions:
            if not isinstance(action, engine.SetWeight):
                continue
            try:
                target = target_for(self.kube, meta.namespace, spec)
                await target.apply(action.weight)
            except TargetError as error:
                telemetry.target_errors.labels(meta.namespace, meta.name, error.reason).inc()
                if error.reason == UNSUPPORTED_TARGET:
                    return engine.cannot_proceed(
                        spec, before, generation=meta.generation, now=now, reason=error.reason,
                        message=error.message,
                    )
                return engine.target_failed(
                    before, generation=meta.generation, now=now, reason=error.reason, message=error.message
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
        if next_check is None:
            return None
        return self.monotonic() + max(0.0, (next_check - now).total_seconds())
