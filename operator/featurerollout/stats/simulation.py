"""Seeded simulations of guardrails over a whole ramp: how often each rule rolls back a flag that
does no harm (A/A), and how fast it rolls back one that does (power). Pure: a seed in, numbers out.

The traffic: `rps` requests a second, each in the treatment with the stage's weight, each failing
with its arm's error rate; every `interval` each rule looks at the stage so far. The three rules see
the very same requests:

 * `sequential`: the always-valid test the operator uses (`sequential.compare`);
 * `z-test`: a one-sided z-test at each look, as if each were the only one;
 * `threshold`: an absolute budget on the treatment's error rate over the last interval.

Needs numpy (`pip install 'featurerollout[simulate]'`) to draw the binomial counts quickly; the
rules themselves are the pure functions of `sequential` and `baselines`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median, quantiles

import numpy as np

from featurerollout.stats.baselines import fixed_threshold_fails, z_test_fails
from featurerollout.stats.sequential import Arm, Decision, compare

__all__ = ["METHODS", "Guardrail", "Outcome", "Traffic", "simulate"]

METHODS: tuple[str, ...] = ("sequential", "z-test", "threshold")


@dataclass(frozen=True)
class Traffic:
    """What the service sees during the ramp."""

    control_rate: float
    treatment_rate: float
    rps: float = 50.0
    interval_s: float = 60.0
    # (weight %, duration s) of the stages that have a control arm; the 100% stage has none.
    stages: tuple[tuple[float, float], ...] = ((10, 3600), (25, 3600), (50, 3600))


@dataclass(frozen=True)
class Guardrail:
    """The budgets each rule is given."""

    max_increase: float = 0.0
    confidence: float = 0.99
    min_sample: int = 1000
    threshold: float = 0.015  # the absolute budget, for the `threshold` rule


@dataclass
class Outcome:
    """Per rule: when (seconds from the start of the ramp) each rolled-back rollout was rolled back."""

    rollouts: int
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})

    def rate(self, method: str) -> float:
        """The share of rollouts rolled back."""
        return len(self.times[method]) / self.rollouts

    def median(self, method: str) -> float | None:
        times = self.times[method]
        return median(times) if times else None

    def p90(self, method: str) -> float | None:
        times = self.times[method]
        if len(times) < 2:
            return times[0] if times else None
        return quantiles(times, n=10, method="inclusive")[8]


def _first_failure(
    method: str,
    traffic: Traffic,
    guardrail: Guardrail,
    counts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> float | None:
    """The moment of the first failing look of one rollout under one rule, or None."""
    stages_with_control = len(traffic.stages)
    start = 0.0
    for (weight, duration), (te, tn, ce, cn) in zip(traffic.stages, counts, strict=True):
        del weight
        cte, ctn, cce, ccn = (np.cumsum(a).tolist() for a in (te, tn, ce, cn))
        for look in range(len(ctn)):
            treatment, control = Arm(cte[look], ctn[look]), Arm(cce[look], ccn[look])
            if method == "sequential":
                failed = compare(
                    treatment, control, max_increase=guardrail.max_increase, confidence=guardrail.confidence,
                    min_sample=guardrail.min_sample, stages_with_control=stages_with_control,
                ).decision == Decision.FAIL
            elif method == "z-test":
                failed = z_test_fails(treatment, control, max_increase=guardrail.max_increase,
                                      confidence=guardrail.confidence, min_sample=guardrail.min_sample)
            else:
                failed = fixed_threshold_fails(Arm(float(te[look]), float(tn[look])), guardrail.threshold)
            if failed:
                return start + (look + 1) * traffic.interval_s
        start += duration
    return None


def simulate(
    traffic: Traffic, guardrail: Guardrail, *, rollouts: int, seed: int, methods: Sequence[str] = METHODS
) -> Outcome:
    """Simulate `rollouts` ramps (seeded) and apply each rule to the same requests."""
    rng = np.random.default_rng(seed)
    per_interval = traffic.rps * traffic.interval_s
    stages: list[tuple[np.ndarray, ...]] = []
    for weight, duration in traffic.stages:
        looks = round(duration / traffic.interval_s)
        total = rng.poisson(per_interval, size=(rollouts, looks))
        treated = rng.binomial(total, weight / 100.0)
        control = total - treated
        stages.append((
            rng.binomial(treated, traffic.treatment_rate).astype(float), treated.astype(float),
            rng.binomial(control, traffic.control_rate).astype(float), control.astype(float),
        ))
    outcome = Outcome(rollouts)
    for index in range(rollouts):
        counts = [(te[index], tn[index], ce[index], cn[index]) for te, tn, ce, cn in stages]
        for method in methods:
            moment = _first_failure(method, traffic, guardrail, counts)
            if moment is not None:
                outcome.times[method].append(moment)
    return outcome
