"""One look at one rollout: read it, measure if due, ask the engine, apply, record.

This is the edge where the engine's decisions meet the world, in the order that keeps users
safe and the record honest:

1. read the object fresh from the API (the schedule may be ahead of the watch);
2. read what the target holds for the flag (its weight and owner marker): a flag that another
   live FeatureRollout owns is never written; drift from the status is the engine's to judge (a
   raise is put back down, a lowering by hand is never written back up);
3. measure every metric when the engine says analysis is due (metrics/measurer.py: templates,
   credentials, providers and batching, in one call);
4. `engine.decide()`;
5. apply its SetWeight through the target first: a rollback reaches users before anything else;
   `engine.settle()` records what the target did: the stage timed from when it took the weight,
   or, if it refused, the old weight and why (a refused rollback stands, its 0% retried);
6. write the status, only when it changed, as a merge patch that names every removed field
   (mergepatch.py says why), guarded by the resourceVersion that was read (a 409 means someone
   changed the object meanwhile: look again at once; but once the target was written, the same
   status is written onto the fresh object, so that the record always holds what the target does);
7. then post the Events and the log line, so an Event never claims what the status does not hold;
   except the Events of a step that wrote the target: users already have it, so they go out
   just before the status write, under names made from the status they follow, so that a
   process killed between the writes neither loses them nor has them posted twice by its
   successor (docs/high-availability.md).
   The notifications those Events call for are queued (notify/: sent off this path, never awaited).

Every rollout is looked at again at least every `resync` seconds, even one that is finished or
waiting for a person, so that drift on its target is found: a raise put right, a switch-off by
hand recorded (and never undone).

Everything the next look needs is in the status, nothing in memory: a restarted operator carries
on from the same stage with the same stage clock and re-emits no old Event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout import api
from featurerollout.core import engine, gates, statuswrites
from featurerollout.core.manual_requests import BadRequest, parse_request
from featurerollout.edges import gate_webhook as gates_webhook
from featurerollout.edges import mergepatch, notify, telemetry
from featurerollout.edges.events import post_event
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES
from featurerollout.edges.kube import CONFLICT, NOT_FOUND, Kube, status_code
from featurerollout.edges.metrics.batcher import QueryBatcher
from featurerollout.edges.metrics.measurer import Measurer
from featurerollout.edges.targets import Target, TargetError, target_for
from featurerollout.edges.targets.base import Owner, check_owner
from featurerollout.edges.targets.webhook import WebhookClients

log = logging.getLogger("featurerollout")

RolloutKey = tuple[str, str]  # (namespace, name)
# With leader election (leader.py): the object to act on (perhaps after claiming it), or None when
# this process must leave the rollout alone for now; and whether it still leads, checked before
# each target write.
Guard = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class NotLeading(Exception):
    """Leadership ran out during a look: nothing more is written."""
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
    notifier: notify.Notifier | None = None  # None: no notifications are sent
    prometheus_address: str | None = None  # --prometheus-address: for metrics that name no Prometheus
    guard: Guard | None = None  # None: act on every rollout (--standalone)
    leading: Callable[[], bool] = lambda: True
    guard_recheck: float = 2.0  # seconds until a rollout the guard held back is looked at again
    # One round of queries per Prometheus for the rollouts due together (None: --no-query-batching,
    # one provider and one query per rollout and metric).
    queries: QueryBatcher | None = None
    # --analysis-status-every: an evaluation that changes no verdict is written only once the stored
    # one is this many seconds old (statuswrites.py); 0 writes every evaluation.
    analysis_status_every: float = 0.0
    max_answer_bytes: int = MAX_ANSWER_BYTES  # --max-response-bytes: the most of one Prometheus answer read
    # When each rollout was last evaluated by this process: with --analysis-status-every the stored
    # lastAnalysisAt may be up to that old, and the analysis lag must be measured from the real one.
    evaluated: dict[RolloutKey, datetime] = field(default_factory=dict)
    # Templates, credentials, providers and the shared round of queries: measuring, in one component.
    measurer: Measurer = field(init=False)

    def __post_init__(self) -> None:
        self.measurer = Measurer(self.kube, default_address=self.prometheus_address, queries=self.queries,
                                 max_answer_bytes=self.max_answer_bytes)

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
                self.evaluated.pop(key, None)
                return None
            raise
        metadata = body.get("metadata", {})
        if metadata.get("deletionTimestamp"):
            return None
        if self.guard is not None:
            guarded = await self.guard(body)
            if guarded is None:
                return self.monotonic() + self.guard_recheck
            body, metadata = guarded, guarded.get("metadata", {})
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
                            decision = engine.settle(
                                spec, status, None, engine.WriteOutcome.failed(refused.reason, refused.message),
                                generation=meta.generation, now=self.clock(), request=request,
                            )
                            return await self._record(body, spec, meta, status, decision)
                    replacing = holding.owner  # its rollout is gone: the flag is free to take over
                # Only a target that reads back what it holds can show drift (a webhook cannot).
                observed = engine.Observed(holding.weight, target.describe()) if target.reads_back else None
            except TargetError as error:
                read_error = error

        # One call to the measuring component: the spec to decide on (its metric templates read and
        # resolved at every look, so that an edit counts from the next evaluation; the plan is hashed
        # from the spec as written) and, when the engine says analysis is due, every metric measured.
        look = await self.measurer.look(spec, meta, status, clock=self.clock, evaluated=self.evaluated.get(key))
        decided, measurements = look.spec, look.measurements

        gate_checks: dict[str, gates.GateCheck] | None = None
        gate = gates.webhook_due(spec, status, self.clock())
        if gate is not None:
            # A webhook gate the rollout waits at: ask it, and let the engine decide on the answer.
            check = await gates_webhook.ask(self.kube, self.webhooks, spec, status, rollout=meta.name,
                                            namespace=meta.namespace, gate=gate)
            gate_checks = {check.name: check}

        # A look that measured decides at the instant its queries were evaluated at (and records it as
        # evaluatedAt): `featurerollout simulate` asks Prometheus the same questions at that instant.
        now = look.at if look.at is not None else self.clock()
        decision = engine.decide(
            decided, status, generation=meta.generation, now=now, measurements=measurements, request=request,
            observed=observed, gate_checks=gate_checks, plan=spec, templates=look.templates,
        )
        if measurements is not None and decision.status.last_analysis_at is not None:
            self.evaluated[key] = decision.status.last_analysis_at  # the engine's next due counts from it
        spec = decided
        writes = any(isinstance(a, engine.SetWeight) for a in decision.actions)
        if read_error is not None and not writes:
            # The target could not be read (gone, broken JSON): say so, as a failed write would.
            decision = engine.settle(
                spec, status, decision, engine.WriteOutcome.failed(read_error.reason, read_error.message),
                generation=meta.generation, now=now, request=request,
            )
            return await self._record(body, spec, meta, status, decision)
        intent = engine.rollback_intent(status, decision)
        if intent is not None:
            body = await self._record_intent(body, meta, intent)
        # What this look read (targets that read back): a write must not raise a flag someone
        # lowered since (targets/base.check_not_lowered).
        read = (observed.weight or 0.0) if observed is not None else None
        outcome = await self._write(spec, meta, decision, owner, replacing, read)
        decision = engine.settle(spec, status, decision, outcome, generation=meta.generation, now=now, request=request)
        return await self._record(body, spec, meta, status, decision)

    async def _record_intent(
        self, body: dict[str, Any], meta: api.ObjectMeta, intent: api.FeatureRolloutStatus
    ) -> dict[str, Any]:
        """Write a rollback's status before its 0% (engine.rollback_intent), fenced by the
        resourceVersion read; returns the object as stored, which the status write after the target
        write is then fenced by. A 409 raises: nothing was written, and the next look decides again."""
        if not self.leading():
            raise NotLeading(f"{meta.namespace}/{meta.name}: no longer the leader; not recording the rollback")
        metadata = body.get("metadata", {})
        stored = await self.kube.patch_rollout_status(
            meta.namespace, meta.name, mergepatch.diff(body.get("status") or {}, status_wire(intent)),
            metadata.get("resourceVersion"),
        )
        telemetry.status_writes.inc()
        return stored

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
        if not wrote_target and not self.leading():
            # A written target must be recorded (the write below is fenced by resourceVersion);
            # anything else waits for whoever leads now.
            raise NotLeading(f"{meta.namespace}/{meta.name}: no longer the leader; not writing the status")
        if not wrote_target and not statuswrites.worth_writing(
            body.get("status") or {}, status_wire(decision.status), now, timedelta(seconds=self.analysis_status_every),
            statuswrites.write_spread(meta.namespace, meta.name),
        ):
            telemetry.status_writes_deferred.inc()
            await self._post_events(body["metadata"], before, decision, now)
            await self._announce(body, spec, meta, before, decision, now)
            return self._due(decision.next_check, now)
        if wrote_target:
            # The step is taken: users have it. Its Events go out now, under names made from the
            # status they follow, so that a process killed before the status write below leaves
            # them for its successor, which takes the same step (engine: lost_record) and posts
            # the same names, refused as already there: each Event once, none lost.
            await self._post_events(body["metadata"], before, decision, now, lasting=True)
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
        if not wrote_target:
            await self._post_events(body["metadata"], before, decision, now)
        await self._announce(body, spec, meta, before, decision, now)
        return self._due(decision.next_check, now)

    async def _post_events(
        self, metadata: dict[str, Any], before: api.FeatureRolloutStatus, decision: engine.Decision, now: datetime,
        lasting: bool = False,
    ) -> None:
        """Post the decision's Events. `lasting`: the step wrote the target, so a successor takes it
        again if this process dies before the status write: name each Event after the status it
        follows, so that the successor's copy is refused as already there."""
        previous = json.dumps(status_wire(before), sort_keys=True, default=str)
        events = [a for a in decision.actions if isinstance(a, engine.EmitEvent)]
        for index, action in enumerate(events):
            key = f"{metadata.get('uid')}|{metadata.get('generation')}|{previous}|{index}|{action.reason}"
            await post_event(self.kube, metadata, action.type, action.reason, action.message, now,
                             key if lasting else None)

    async def _write(
        self,
        spec: api.FeatureRolloutSpec,
        meta: api.ObjectMeta,
        decision: engine.Decision,
        owner: Owner,
        replacing: Owner | None,
        read: float | None = None,
    ) -> engine.WriteOutcome:
        """Apply the decision's SetWeight (if any) through the target; what became of it is for
        engine.settle() to record."""
        for action in decision.actions:
            if not isinstance(action, engine.SetWeight):
                continue
            if not self.leading():
                # Leadership ran out while deciding: another process may take the Lease soon.
                raise NotLeading(f"{meta.namespace}/{meta.name}: no longer the leader; not writing the target")
            try:
                target: Target = target_for(self.kube, meta.namespace, where_it_lives(spec, decision.status),
                                            rollout=meta.name, webhooks=self.webhooks)
                target.claim(owner, replacing)
                target.expect(read)
                await target.apply(action.weight)
            except TargetError as error:
                telemetry.target_errors.labels(meta.namespace, meta.name, error.reason).inc()
                return engine.WriteOutcome.failed(error.reason, error.message)
            # A stage holds from the moment the target really holds its weight, which is now that
            # the write returned, not when the decision was taken.
            return engine.WriteOutcome.applied(self.clock())
        return engine.WriteOutcome()

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
        if self.notifier is not None and spec is not None and spec.notifications:
            # Only queued here, never sent: a receiver cannot delay this or any other rollout.
            self.notifier.submit(notify.derive(namespace=meta.namespace, rollout=meta.name, flag=spec.flag,
                                               decision=decision, now=now), spec.notifications)
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
