"""The stretch of history to replay, and its numbers as the operator would have got them: `--from`/
`--to` times, and measuring through the operator's own path against Prometheus at each instant (I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import cast

from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    ObjectMeta,
    PrometheusProvider,
)
from featurerollout.commands.simulate.replay import Measure
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.kube import Kube
from featurerollout.edges.metrics.measurer import Measurer
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider

# --- times -------------------------------------------------------------------------------------

_RELATIVE_RE = re.compile(r"^-(\d+(?:\.\d+)?)([smhdw])$")
_RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: datetime) -> datetime:
    """RFC 3339 (`2026-11-23T00:00:00Z`), `now`, or relative to now: `-7d`, `-36h`, `-30m`, `-2w`."""
    if text == "now":
        return now
    match = _RELATIVE_RE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _RELATIVE_UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use RFC 3339 (2026-11-23T00:00:00Z), now, or -7d, -36h, -30m")\
            from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z (UTC) or an offset such as +01:00")
    return moment



# --- measuring as the operator does (I/O) ------------------------------------------------------


def operator_measure(spec: FeatureRolloutSpec, *, address: str, name: str, namespace: str,
                     timeout: str | None = None) -> Measure:
    """A Measure that asks Prometheus at `address` through the operator's own measuring path
    (`Measurer.measure`, as the reconciler's looks do), every query evaluated at the look's instant.
    No Secret is read: the spec's `prometheus.auth` is dropped (give a URL that needs none, e.g. a
    port-forward)."""
    analysis = spec.analysis
    assert analysis is not None
    where = (analysis.prometheus or PrometheusProvider(address=address)).model_copy(
        update={"address": address, "auth": None, **({"timeout": timeout} if timeout else {})})
    measured = spec.model_copy(update={"analysis": analysis.model_copy(update={"prometheus": where})})
    # Without auth and without templates (refused by the command) the measuring path never calls the
    # API server: no cluster is needed to replay.
    measurer = Measurer(kube=cast(Kube, None))
    meta = ObjectMeta(name=name, namespace=namespace)

    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        return await measurer.measure(measured, meta, status, at=at)

    return measure


async def reachable(address: str, at: datetime, timeout: str) -> str | None:
    """Why Prometheus at `address` cannot answer a query at `at` (None: it can)."""
    provider = PrometheusMetricProvider(PrometheusProvider(address=address, timeout=timeout), at=at)
    try:
        answer = await provider.measure("vector(1)")
    finally:
        await provider.aclose()
    return answer.detail if answer.kind == MeasurementKind.ERROR else None
