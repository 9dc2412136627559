"""An always-valid comparison of two error rates: treatment (the flag's `on` users) against control
(its `off` users), that may be looked at every analysis interval without inflating false alarms.

Pure: counts in, a verdict out. No I/O, no clock.

The method
----------
A confidence sequence for the difference (or the ratio) of the two error rates: a sequence of
intervals that all hold at once, at every look, with probability at least the confidence level, so a
rollout may stop at whichever look the data first crosses its budget. The boundary is Robbins' normal
mixture, in the form of

  * Howard, Ramdas, McAuliffe, Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Annals of Statistics 49(2), the normal mixture boundary (eq. 14); and
  * Waudby-Smith, Arnold, Wu, Ramdas (2024), "Time-uniform central limit theory and asymptotic
    confidence sequences", Annals of Statistics 52(6), the asymptotic confidence sequence
    `mu_t +- sigma_t * sqrt(2(t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha))`, with
    the plug-in variance, and its choice of rho that makes the boundary tightest at a chosen t*.

This is the same mixture that the mixture sequential probability ratio test of Johari, Koomen,
Pekelis, Walsh (2017/2022), "Always valid inference: continuous monitoring of A/B tests" (Operations
Research 70(3)) rejects with: the interval excludes a value exactly when the mSPRT rejects it.

In z-units the half-width is `sqrt((1 + 1/r) * log((r + 1) / alpha^2))` with `r = t * rho^2`, where
`t` is the treatment arm's sample (the slower-growing arm: within a stage the allocation is fixed, so
the estimate's variance shrinks as 1/t). It is nearly flat for r between 5 and 200 (about 3.6 to 3.9
at alpha 0.01, against 2.33 for a one-sided z-test at a single look), which is what it costs to be
allowed to look every minute.

 * The difference uses the Agresti-Caffo adjustment (one error and one success added to each arm;
   Agresti and Caffo 2000, "Simple and effective confidence intervals for proportions and
   differences of proportions result from adding two successes and two failures", The American
   Statistician 54(4)), so that an arm with no error yet does not get a variance of zero.
 * The ratio works on the log scale with the delta method and Haldane's 0.5 correction (so that
   zero counts are finite).

The rollout-wide confidence
---------------------------
The comparison is made within one stage at a time: within a stage the share of users in each arm is
fixed, so a baseline that moves (a bad hour for everyone) moves both arms alike and leaves the
difference unbiased; pooled across stages, the treatment's share grows with time and a moving
baseline would look like harm (Simpson's paradox). A ramp with k stages that have a control arm (the
100% stage has none) runs k comparisons, so each gets alpha / k (Bonferroni): over the whole ramp,
the chance of a false rollback is at most 1 - confidence. `docs/guardrails.md` shows it by simulation.

The decisions
-------------
 * **NoData** while either arm has fewer than `min_sample` requests.
 * **Fail** when the whole interval lies above the budget: at the stated confidence, the treatment
   is worse than the budget allows (its lower bound exceeds `maxIncrease`, or `maxRatio`).
 * **Pass** otherwise: enough sample and no evidence of harm. The stage then promotes when its
   duration has passed, as every metric does. We chose this rule, rather than requiring the data to
   *show* that the treatment is not worse (the upper bound under the budget), because showing
   non-inferiority needs far more sample than detecting harm: with `maxIncrease: 0` it can never be
   shown at all when the rates are equal, and at 10% exposure it would hold a healthy rollout for
   hours. The stage duration is the exposure the user chose to watch; the guardrail's job is to stop
   harm within it. Whether the data also shows "not worse" is reported (`shown_not_worse`), in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = [
    "TIGHT_AT_MULTIPLE",
    "Arm",
    "Decision",
    "Evidence",
    "compare",
    "difference_bounds",
    "mixture_z",
    "ratio_bounds",
    "stage_alpha",
]

# The mixture is tuned to be tightest when the treatment arm has this many times the minimum sample:
# decisions are rarely taken at the minimum itself, and the boundary is flat for 10x either side.
TIGHT_AT_MULTIPLE = 4.0

Scale = Literal["difference", "ratio"]


class Decision(StrEnum):
    """The verdict of one look."""

    FAIL = "Fail"  # the treatment is worse than the budget allows, at the confidence level
    PASS = "Pass"  # enough sample, and no evidence of harm
    NO_DATA = "NoData"  # below the minimum sample in an arm


@dataclass(frozen=True)
class Arm:
    """One arm's counts over the comparison window: failed requests and all requests."""

    errors: float
    total: float

    @property
    def rate(self) -> float | None:
        """The error rate, or None with no request."""
        return self.errors / self.total if self.total > 0 else None


def stage_alpha(confidence: float, stages_with_control: int) -> float:
    """The error rate each stage's comparison may spend so that the whole ramp keeps `confidence`."""
    return (1.0 - confidence) / max(1, stages_with_control)


def mixture_z(t: float, alpha: float, tight_at: float) -> float:
    """The normal mixture boundary in z-units at sample `t`, tuned to be tightest at `tight_at`.

    Waudby-Smith et al. (2024), with rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / t*.
    """
    log_alpha = -2.0 * math.log(alpha)
    rho2 = (log_alpha + math.log(log_alpha + 1.0)) / max(tight_at, 1.0)
    r = max(t, 1.0) * rho2
    return math.sqrt((1.0 + 1.0 / r) * (math.log(r + 1.0) + log_alpha))


def difference_bounds(
    treatment: Arm, control: Arm, alpha: float, tight_at: float
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of treatment rate - control rate; the bounds Agresti-Caffo adjusted."""
    pt = (treatment.errors + 1.0) / (treatment.total + 2.0)
    pc = (control.errors + 1.0) / (control.total + 2.0)
    variance = pt * (1.0 - pt) / (treatment.total + 2.0) + pc * (1.0 - pc) / (control.total + 2.0)
    half = math.sqrt(variance) * mixture_z(treatment.total, alpha, tight_at)
    # The interval is centred on the adjusted difference; the estimate shown is the raw one.
    raw = treatment.errors / max(treatment.total, 1.0) - control.errors / max(control.total, 1.0)
    return raw, pt - pc - half, pt - pc + half


def ratio_bounds(treatment: Arm, control: Arm, alpha: float, tight_at: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of treatment rate / control rate, on the log scale (Haldane 0.5)."""
    et, nt = treatment.errors + 0.5, treatment.total + 0.5
    ec, nc = control.errors + 0.5, control.total + 0.5
    log_ratio = math.log(et / nt) - math.log(ec / nc)
    variance = max(0.0, 1.0 / et - 1.0 / nt + 1.0 / ec - 1.0 / nc)
    half = math.sqrt(variance) * mixture_z(treatment.total, alpha, tight_at)
    return math.exp(log_ratio), math.exp(log_ratio - half), math.exp(log_ratio + half)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.3g}%"


def _points(value: float) -> str:
    """A difference of rates in percentage points, signed."""
    return f"{value * 100:+.3g} pt"


@dataclass(frozen=True)
class Evidence:
    """One look's verdict, with what it rests on."""

    decision: Decision
    treatment: Arm
    control: Arm
    scale: Scale
    budget: float  # maxIncrease (difference) or maxRatio (ratio)
    confidence: float  # rollout-wide
    min_sample: int
    estimate: float | None = None  # the difference or the ratio; None below the minimum sample
    lower: float | None = None
    upper: float | None = None

    @property
    def shown_not_worse(self) -> bool:
        """The whole interval lies within the budget: the data shows the treatment is not worse."""
        return self.upper is not None and self.upper <= self.budget

    def budget_words(self) -> str:
        if self.scale == "difference":
            return f"at most {_points(self.budget)} over control"
        return f"at most {self.budget:g}x control"

    def interval_words(self) -> str:
        if self.estimate is None or self.lower is None or self.upper is None:
            return ""
        if self.scale == "difference":
            return f"difference {_points(self.estimate)}, interval [{_points(self.lower)}, {_points(self.upper)}]"
        return f"ratio {self.estimate:.3g}x, interval [{self.lower:.3g}x, {self.upper:.3g}x]"

    def words(self) -> str:
        """The evidence for people: `treatment 1.9% vs control 1.0%: worse, 99% confidence (...)`."""
        arms = (
            f"treatment {_percent(self.treatment.rate)} of {self.treatment.total:.0f} vs "
            f"control {_percent(self.control.rate)} of {self.control.total:.0f}"
        )
        confidence = f"{self.confidence * 100:g}% confidence"
        if self.decision == Decision.NO_DATA:
            return f"{arms}: not enough sample yet (minimum {self.min_sample} per arm)"
        details = f"{self.interval_words()}; budget {self.budget_words()}"
        if self.decision == Decision.FAIL:
            return f"{arms}: worse than the budget allows, {confidence} ({details})"
        if self.shown_not_worse:
            return f"{arms}: not worse than the budget allows, {confidence} ({details})"
        return f"{arms}: no evidence of harm ({details})"


def compare(
    treatment: Arm,
    control: Arm,
    *,
    max_increase: float | None = None,
    max_ratio: float | None = None,
    confidence: float = 0.99,
    min_sample: int = 1000,
    stages_with_control: int = 1,
    variance_inflation: float = 1.0,
) -> Evidence:
    """One look: Fail, Pass or NoData for the treatment against the control (see the module doc).

    Give exactly one of `max_increase` (the largest allowed treatment - control rate) and
    `max_ratio` (the largest allowed treatment / control rate). The counts are cumulative over the
    current stage; `stages_with_control` is how many stages of the ramp run such a comparison.

    `variance_inflation` (the design effect, >= 1) is how many times the counts' variance exceeds
    that of independent requests: the test then runs on the effective sample, every count divided
    by it (Kish), which widens the interval by its square root. The minimum sample is on the counts.
    """
    if (max_increase is None) == (max_ratio is None):
        raise ValueError("give exactly one of max_increase and max_ratio")
    scale: Scale = "difference" if max_ratio is None else "ratio"
    budget = max_increase if max_increase is not None else max_ratio
    assert budget is not None
    base = Evidence(Decision.NO_DATA, treatment, control, scale, budget, confidence, min_sample)
    if treatment.total < min_sample or control.total < min_sample:
        return base
    alpha = stage_alpha(confidence, stages_with_control)
    tight_at = TIGHT_AT_MULTIPLE * min_sample / variance_inflation
    def effective(arm: Arm) -> Arm:
        return Arm(arm.errors / variance_inflation, arm.total / variance_inflation)

    bounds = (difference_bounds if scale == "difference" else ratio_bounds)(
        effective(treatment), effective(control), alpha, tight_at
    )
    estimate, lower, upper = bounds
    decision = Decision.FAIL if lower > budget else Decision.PASS
    return Evidence(decision, treatment, control, scale, budget, confidence, min_sample, estimate, lower, upper)
