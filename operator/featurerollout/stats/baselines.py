"""The two rules the sequential test is compared against in `docs/guardrails.md`. Pure.

Neither is used by the operator to decide: they are here to show, on the same simulated traffic, what
the always-valid test buys.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from featurerollout.stats.sequential import Arm

__all__ = ["fixed_threshold_fails", "z_test_fails"]


def fixed_threshold_fails(treatment_last_interval: Arm, max_rate: float) -> bool:
    """The absolute budget as `max` on the treatment's error rate over the last interval fails."""
    rate = treatment_last_interval.rate
    return rate is not None and rate > max_rate


def z_test_fails(
    treatment: Arm, control: Arm, *, max_increase: float, confidence: float, min_sample: int
) -> bool:
    """A one-sided two-proportion z-test (Wald, unpooled) at the confidence level, as if each look
    were the only one: the rule whose false alarms grow with every peek."""
    if treatment.total < min_sample or control.total < min_sample:
        return False
    pt, pc = treatment.errors / treatment.total, control.errors / control.total
    variance = pt * (1 - pt) / treatment.total + pc * (1 - pc) / control.total
    if variance <= 0:
        return pt - pc > max_increase
    z = (pt - pc - max_increase) / math.sqrt(variance)
    return z > NormalDist().inv_cdf(confidence)
