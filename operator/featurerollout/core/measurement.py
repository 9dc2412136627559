"""What one evaluation of one metric yields: a number, no data, or an error.

Providers (metrics/) produce these; the engine turns them into verdicts. Keeping the three cases
apart is what lets the engine refuse to promote on an error without mistaking it for a breach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from featurerollout.api import FeatureRolloutSpec
from featurerollout.stats.sequential import Arm


class MeasurementKind(StrEnum):
    VALUE = "Value"  # a scalar, or a one-element vector
    NO_DATA = "NoData"  # an empty vector, or NaN
    ERROR = "Error"  # several series, invalid PromQL, an unreachable or timed-out server


@dataclass(frozen=True)
class Measurement:
    """The outcome of one query. `detail` says why, for NoData and Error (Prometheus's own words)."""

    kind: MeasurementKind
    value: float | None = None
    detail: str = ""
    # A compare metric's counts over the stage: (treatment, control). Set with kind VALUE only.
    counts: tuple[Arm, Arm] | None = None

    @classmethod
    def of(cls, value: float) -> Measurement:
        """A number; NaN counts as no data, as PromQL yields NaN for 0/0."""
        if math.isnan(value):
            return cls(MeasurementKind.NO_DATA, None, "the query returned NaN")
        return cls(MeasurementKind.VALUE, value)

    @classmethod
    def of_counts(cls, treatment: Arm, control: Arm) -> Measurement:
        """A compare metric's four counts (errors and totals of each arm)."""
        return cls(MeasurementKind.VALUE, None, "", (treatment, control))

    @classmethod
    def no_data(cls, detail: str) -> Measurement:
        return cls(MeasurementKind.NO_DATA, None, detail)

    @classmethod
    def error(cls, detail: str) -> Measurement:
        return cls(MeasurementKind.ERROR, None, detail)


@dataclass(frozen=True)
class Interval:
    """How often a rollout's metrics are evaluated (spec.analysis.interval): `text` as written, for
    the queries' {{interval}} and the words people read; `every`, its length, for the clock."""

    text: str
    every: timedelta


def analysis_interval(spec: FeatureRolloutSpec) -> Interval | None:
    """spec.analysis.interval: the one place it is read. None without analysis."""
    if spec.analysis is None:
        return None
    return Interval(spec.analysis.interval, spec.analysis.every)
