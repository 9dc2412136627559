"""The one component that measures a rollout at a look: it reads the metric templates, resolves
them, decides with the engine whether analysis is due, reads the Prometheus credentials from their
Secrets, makes the providers (one of its own per Prometheus, or one in the shared round of queries,
metrics/batcher.py) and measures every metric at the look's instant.

The reconciler calls `look()` once per look and gets back the spec to decide on and what was
measured; nothing here calls back into the reconciler. `featurerollout simulate` measures through
`measure()`, the same path without the API server (no templates, no Secrets).

Templates are read with a plain GET each time (template_reader.py), so that an edit takes effect
at the very next evaluation.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from featurerollout import api
from featurerollout.core import engine
from featurerollout.core.measurement import Measurement, analysis_interval
from featurerollout.edges import telemetry
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES
from featurerollout.edges.kube import Kube, SecretNotUsable, api_message, read_usable_secret
from featurerollout.edges.metrics import provider_for
from featurerollout.edges.metrics.batcher import QueryBatcher, batched_provider
from featurerollout.edges.metrics.prometheus import InvalidCredentials, PrometheusCredentials, credentials_from_secret
from featurerollout.edges.metrics.provider import MetricProvider, measure_all, measure_query
from featurerollout.edges.metrics.queries import render_query
from featurerollout.edges.metrics.template_reader import read_templates
from featurerollout.edges.metrics.templates import Resolution, describe, resolve, template_refs

NO_PROMETHEUS = (
    "no Prometheus to ask: set spec.analysis.prometheus.address (or the template's spec.prometheus), or run "
    "the operator with --prometheus-address (chart value prometheus.address)"
)


@dataclass(frozen=True)
class Look:
    """What one look measured, for the engine to decide on."""

    spec: api.FeatureRolloutSpec  # the spec to decide on: its templateRef metrics resolved
    measurements: dict[str, Measurement] | None = None  # None: no analysis was due
    at: datetime | None = None  # the instant the queries were evaluated at (None: nothing measured)
    # Which template (and generation) each measured metric's query came from (None: no template used).
    templates: dict[str, api.TemplateUsed | None] | None = None


def templates_used(
    resolution: Resolution | None, measured: Mapping[str, Measurement] | None
) -> dict[str, api.TemplateUsed | None] | None:
    """The template each metric measured at this look used, for the status (engine: record_templates)."""
    if resolution is None or not measured:
        return None
    return {name: resolved.template for name, resolved in resolution.metrics.items() if name in measured}


@dataclass
class Measurer:
    """Credentials, providers, the shared round of queries and the templates: everything measuring needs."""

    kube: Kube
    default_address: str | None = None  # --prometheus-address: for metrics that name no Prometheus
    # One round of queries per Prometheus for the rollouts due together (None: --no-query-batching,
    # one provider and one query per rollout and metric).
    queries: QueryBatcher | None = None
    max_answer_bytes: int = MAX_ANSWER_BYTES  # --max-response-bytes: the most of one answer read

    async def look(
        self, spec: api.FeatureRolloutSpec, meta: api.ObjectMeta, status: api.FeatureRolloutStatus, *,
        clock: Callable[[], datetime], evaluated: datetime | None = None,
    ) -> Look:
        """Resolve the spec's templates and, when the engine says analysis is due, measure every
        metric. `evaluated`: when this process last evaluated the rollout (the stored
        lastAnalysisAt may be older, statuswrites.py), for the analysis lag."""
        # Metric templates are read at every look, so that an edit counts from the next evaluation;
        # the engine decides on the resolved spec, and hashes the plan from the spec as written.
        resolution = await self.resolve(spec, meta.namespace)
        decided = resolution.spec if resolution is not None else spec
        measuring = clock()
        if not engine.analysis_due(decided, status, measuring):
            return Look(decided)
        last = max((t for t in (status.last_analysis_at, evaluated) if t is not None), default=None)
        interval = analysis_interval(decided)
        if last is not None and interval is not None:
            due = last + interval.every
            telemetry.analysis_lag.observe(max(0.0, (measuring - due).total_seconds()))
        at = self.instant(measuring, status)
        measurements = await self.measure(decided, meta, status, resolution, at=at)
        return Look(decided, measurements, at, templates_used(resolution, measurements))

    async def resolve(self, spec: api.FeatureRolloutSpec, namespace: str) -> Resolution | None:
        """The spec with its templateRef metrics resolved (None: it uses no template)."""
        keys = template_refs(spec)
        if not keys:
            return None
        templates = await read_templates(self.kube, namespace, keys)
        return resolve(spec, templates, namespace)

    def instant(self, measuring: datetime, status: api.FeatureRolloutStatus) -> datetime:
        """The instant a look that starts at `measuring` evaluates its queries at: with batching, the
        one the rollouts due together share (never before the stage began); else `measuring`."""
        if self.queries is None:
            return measuring
        shared = self.queries.instant(measuring)
        began = status.stage_started_at
        return measuring if began is not None and shared < began else shared

    async def measure(
        self, spec: api.FeatureRolloutSpec, meta: api.ObjectMeta, status: api.FeatureRolloutStatus,
        resolution: Resolution | None = None, *, at: datetime,
    ) -> dict[str, Measurement]:
        """Every metric of a look at the instant `at`, as Prometheus answers for that instant.
        `featurerollout simulate` replays looks through this very method."""
        analysis = spec.analysis
        interval = analysis_interval(spec)
        assert analysis is not None and interval is not None
        # {{window}}: the stage so far, for the counts a compare metric's sequential test needs.
        window = at - status.stage_started_at if status.stage_started_at is not None else None
        if resolution is not None or analysis.prometheus is None:
            return await self.measure_resolution(
                resolution or resolve(spec, {}, meta.namespace), flag=spec.flag, name=meta.name,
                namespace=meta.namespace, window=window, at=at,
            )
        try:
            credentials = await self.credentials(analysis.prometheus, meta.namespace)
        except InvalidCredentials as error:
            return {m.name: Measurement.error(str(error)) for m in analysis.metrics}
        provider = self.provider(analysis.prometheus, credentials, at)
        try:
            return await measure_all(
                provider, analysis.metrics, flag=spec.flag, name=meta.name, namespace=meta.namespace,
                interval=interval.text, window=window, now=at,
            )
        finally:
            await provider.aclose()

    async def measure_resolution(
        self,
        resolution: Resolution,
        *,
        flag: str,
        name: str,
        namespace: str,
        window: timedelta | None,
        at: datetime | None = None,
    ) -> dict[str, Measurement]:
        """Measure every metric of a resolved spec: an unresolved one is an Error with its reason; the
        others grouped by the Prometheus they ask (the template's, else the rollout's, else the
        operator's default), one provider per server."""
        analysis = resolution.spec.analysis
        interval = analysis_interval(resolution.spec)
        assert analysis is not None and interval is not None
        results: dict[str, Measurement] = {}
        groups: dict[str, tuple[api.PrometheusProvider, list[str], str]] = {}
        fallback = analysis.prometheus
        if fallback is None and self.default_address is not None:
            fallback = api.PrometheusProvider(address=self.default_address)
        for metric in analysis.metrics:
            resolved = resolution.metrics[metric.name]
            if resolved.error is not None:
                results[metric.name] = Measurement.error(resolved.error)
                continue
            where = resolved.prometheus or fallback
            if where is None:
                results[metric.name] = Measurement.error(f"metric {metric.name!r}: {NO_PROMETHEUS}")
                continue
            field = "spec.analysis.prometheus.auth"
            if resolved.prometheus is not None and resolved.template is not None:
                field = f"{describe(resolved.template.kind, resolved.template.name, namespace)}: spec.prometheus.auth"
            groups.setdefault(where.model_dump_json(), (where, [], field))[1].append(metric.name)

        async def measure_group(where: api.PrometheusProvider, names: list[str], field: str) -> dict[str, Measurement]:
            try:
                credentials = await self.credentials(where, namespace, field)
            except InvalidCredentials as error:
                return {n: Measurement.error(str(error)) for n in names}
            provider = self.provider(where, credentials, at)
            try:
                plain = [resolution.metrics[n].metric for n in names if resolution.metrics[n].args is None]
                measured = await measure_all(
                    provider, plain, flag=flag, name=name, namespace=namespace, interval=interval.text,
                    window=window, now=at,
                )

                async def templated(metric_name: str) -> Measurement:
                    resolved = resolution.metrics[metric_name]
                    try:
                        render_query(
                            resolved.metric.query or "", flag=flag, name=name, namespace=namespace,
                            interval=interval.text, window=window, args=resolved.args,
                        )
                    except ValueError as error:
                        template = resolved.template
                        source = f" (from {describe(template.kind, template.name, namespace)})" if template else ""
                        return Measurement.error(f"metric {metric_name!r}{source}: {error}")
                    try:
                        # With a batching provider, rollouts of other flags using this template with
                        # the same args share one query grouped by flag (measure_query).
                        return await measure_query(
                            provider, resolved.metric.query or "", flag=flag, name=name, namespace=namespace,
                            interval=interval.text, window=window, args=resolved.args,
                        )
                    except Exception as error:  # as measure_all: one metric's bug must not take the others down
                        return Measurement.error(f"metric {metric_name!r}: {type(error).__name__}: {error}")

                others = [n for n in names if resolution.metrics[n].args is not None]
                for metric_name, measurement in zip(
                    others, await asyncio.gather(*(templated(n) for n in others)), strict=True
                ):
                    measured[metric_name] = measurement
                return measured
            finally:
                await provider.aclose()

        for part in await asyncio.gather(*(measure_group(w, n, f) for w, n, f in groups.values())):
            results.update(part)
        return results

    def provider(
        self, where: api.PrometheusProvider, credentials: PrometheusCredentials | None, at: datetime | None = None
    ) -> MetricProvider:
        """The provider for one Prometheus, its queries evaluated at `at`: in the shared round of
        queries (metrics/batcher.py), or, with --no-query-batching, one of its own."""
        if self.queries is None:
            return provider_for(where, credentials, at, self.max_answer_bytes)
        return batched_provider(self.queries, where, credentials, at, self.max_answer_bytes)

    async def credentials(
        self, spec: api.PrometheusProvider, namespace: str, field: str = "spec.analysis.prometheus.auth"
    ) -> PrometheusCredentials | None:
        """The credentials a Prometheus's `auth` names, from the Secret in the rollout's namespace."""
        if spec.auth is None:
            return None
        # Always the rollout's namespace, a ClusterMetricTemplate's auth too (docs/metric-templates.md).
        where = f"Secret {namespace}/{spec.auth.secret_name} ({field})"
        try:
            secret = await read_usable_secret(self.kube, namespace, spec.auth.secret_name, field)
        except SecretNotUsable as refused:
            raise InvalidCredentials(refused.message) from None
        except Exception as error:
            raise InvalidCredentials(f"{where}: {api_message(error)}") from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        try:
            return credentials_from_secret(data)
        except InvalidCredentials as error:
            raise InvalidCredentials(f"{where}: {error}") from None
