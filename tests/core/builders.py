"""Small builders for engine tests: specs, measurements, and a rollout driven through decide()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout.api import (
    ControlAction,
    FeatureRolloutSpec,
    FeatureRolloutStatus,
)
from featurerollout.core.engine import ControlRequest, Decision, EmitEvent, SetWeight, analysis_due, decide
from featurerollout.core.measurement import Measurement

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

RAMP: tuple[tuple[float, str | None], ...] = ((10, "1m"), (25, "1m"), (50, "1m"), (100, None))


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def make_spec(
    stages: Sequence[tuple[float, str | None]] = RAMP,
    *,
    analysis: bool = False,
    metrics: Sequence[Mapping[str, Any]] | None = None,
    interval: str = "10s",
    on_no_data: str = "Hold",
    error_limit: int = 2,
    on_error: str = "Rollback",
    automatic: bool = True,
    paused: bool = False,
    flag: str = "new-checkout",
) -> FeatureRolloutSpec:
    """A spec in wire form, validated; `analysis=True` adds one metric `error-rate` with max 0.01."""
    body: dict[str, Any] = {
        "flag": flag,
        "target": {"configMap": {"name": "feature-flags"}},
        "stages": [{"weight": w, **({"duration": d} if d else {})} for w, d in stages],
        "rollback": {"automatic": automatic},
        "paused": paused,
    }
    if analysis or metrics is not None:
        body["analysis"] = {
            "interval": interval,
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": list(metrics or [{"name": "error-rate", "query": "q", "max": 0.01}]),
            "onNoData": on_no_data,
            "consecutiveErrorLimit": error_limit,
            "onError": on_error,
        }
    return FeatureRolloutSpec.model_validate(body)


def ok(value: float = 0.002) -> dict[str, Measurement]:
    return {"error-rate": Measurement.of(value)}


def bad(value: float = 0.05) -> dict[str, Measurement]:
    return {"error-rate": Measurement.of(value)}


def no_data() -> dict[str, Measurement]:
    return {"error-rate": Measurement.no_data("the query returned an empty vector")}


def error(detail: str = "parse error at char 5: unexpected identifier") -> dict[str, Measurement]:
    return {"error-rate": Measurement.error(detail)}


def req(action: str, id_: str | None = None) -> ControlRequest:
    return ControlRequest(id=id_ or f"{action}-1", action=ControlAction(action))


def weights(decision: Decision) -> list[float]:
    return [a.weight for a in decision.actions if isinstance(a, SetWeight)]


def events(decision: Decision) -> list[EmitEvent]:
    return [a for a in decision.actions if isinstance(a, EmitEvent)]


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in events(decision)]


@dataclass
class Rollout:
    """A FeatureRollout driven through decide() the way the handler drives it: the returned status
    is written back, the applied weights are recorded, the clock is the test's."""

    spec: FeatureRolloutSpec
    now: datetime = T0
    generation: int = 1
    status: FeatureRolloutStatus = field(default_factory=FeatureRolloutStatus)
    applied: list[float] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def tick(
        self,
        after: float = 0,
        measurements: Mapping[str, Measurement] | None = None,
        request: ControlRequest | None = None,
    ) -> Decision:
        self.now += seconds(after)
        decision = decide(
            self.spec,
            self.status,
            generation=self.generation,
            now=self.now,
            measurements=measurements,
            request=request,
        )
        self.status = decision.status
        self.applied.extend(weights(decision))
        self.decisions.append(decision)
        return decision

    def due(self) -> bool:
        return analysis_due(self.spec, self.status, self.now)

    def change_spec(self, spec: FeatureRolloutSpec) -> None:
        self.spec = spec
        self.generation += 1


def cond(decision_or_status: Decision | FeatureRolloutStatus, type_: str) -> tuple[str, str]:
    status = decision_or_status.status if isinstance(decision_or_status, Decision) else decision_or_status
    c = status.condition(type_)
    assert c is not None, f"no {type_} condition"
    return str(c.status), c.reason


def metric(r: Rollout, name: str = "error-rate"):  # type: ignore[no-untyped-def]
    return next(m for m in r.status.metrics if m.name == name)
