"""Metric providers: a query in, a Measurement (a number, NoData or Error) out.

`MetricProvider` is the interface; `PrometheusMetricProvider` the one backend so far;
`measure_all` runs one rollout's metrics concurrently; `render_query` fills in query variables.
"""

from __future__ import annotations

from datetime import datetime

from featurerollout.api import PrometheusProvider
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES
from featurerollout.edges.metrics.prometheus import (
    InvalidCredentials,
    PrometheusCredentials,
    PrometheusMetricProvider,
    credentials_from_secret,
)
from featurerollout.edges.metrics.provider import MetricProvider, measure_all
from featurerollout.edges.metrics.queries import UnknownQueryVariable, prometheus_duration, render_query

__all__ = [
    "InvalidCredentials",
    "MetricProvider",
    "PrometheusCredentials",
    "PrometheusMetricProvider",
    "UnknownQueryVariable",
    "credentials_from_secret",
    "measure_all",
    "prometheus_duration",
    "provider_for",
    "render_query",
]


def provider_for(
    spec: PrometheusProvider, credentials: PrometheusCredentials | None = None, at: datetime | None = None,
    max_answer_bytes: int = MAX_ANSWER_BYTES,
) -> MetricProvider:
    """The provider for a rollout's `spec.analysis.prometheus` (the factory more backends will join),
    its queries evaluated at the instant `at` (None: the backend's now), its answers read up to
    `max_answer_bytes` each."""
    return PrometheusMetricProvider(spec, credentials, at=at, max_answer_bytes=max_answer_bytes)
