"""Seeded simulations of guardrails over a whole ramp, through the counters an app exports and the
counts the operator takes from them: how often each rule rolls back a flag that does no harm (A/A),
and how fast it rolls back one that does (power). Pure: a seed in, numbers out. Vectorised (numpy).

The app and its Prometheus, as the operator sees them:

 * requests arrive at `rps` a second (optionally diurnal), each user in the treatment with the
   stage's weight; with `users`, a share of them have a broken client that fails `broken_rate` of
   their requests (flagd assigns users, not requests, to variants, and keeps a user's variant as
   the weight grows);
 * the app counts them in two counters per arm (code 200 and 500), each created at its first
   increment; it restarts `restarts_per_hour` times an hour at a random moment: what it counted
   since the last scrape is lost, and its counters start again from 0;
 * Prometheus scrapes every `scrape_s`; each stage begins at a scrape;
 * every `interval_s` the operator takes the stage's counts exactly as metrics/compare.py does:
   per series, the scraped value's increase since the stage's start, a drop read as a reset
   (stats/counters.py). `counters` below is that arithmetic on the whole timeline at once;
   tests/stats/test_simulation_prometheus.py checks it against a real Prometheus on backfilled
   series, look by look.

The rules see the very same counts:

 * `sequential`: the always-valid test the operator uses (`sequential.compare`, vectorised here
   as `sequential_fails`, checked against it);
 * `z-test`: a one-sided z-test at each look, as if each were the only one;
 * `threshold`: an absolute budget on the treatment's error rate since the previous look.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist, median, quantiles

import numpy as np

from featurerollout.stats.sequential import TIGHT_AT_MULTIPLE, stage_alpha

__all__ = ["METHODS", "Guardrail", "Outcome", "StageCounts", "Timeline", "Traffic", "counted", "sequential_fails",
           "simulate", "stage_counts", "timeline", "wilson"]

METHODS: tuple[str, ...] = ("sequential", "z-test", "threshold")

Array = np.ndarray


@dataclass(frozen=True)
class Traffic:
    """What the service sees during the ramp, and how it is scraped and looked at."""

    control_rate: float
    treatment_rate: float
    rps: float = 50.0
    interval_s: float = 60.0  # the analysis interval: how often the operator looks
    scrape_s: float = 15.0
    # (weight %, duration s) of the stages that have a control arm; the 100% stage has none.
    stages: tuple[tuple[float, float], ...] = ((10, 3600), (25, 3600), (50, 3600))
    restarts_per_hour: float = 1.0
    diurnal: float = 0.0  # traffic swings by this share around rps over a day, starting at its trough
    users: int | None = None  # None: every request independent
    broken_share: float = 0.0  # the share of users whose client fails broken_rate of their requests
    broken_rate: float = 0.3


@dataclass(frozen=True)
class Guardrail:
    """The budgets each rule is given."""

    max_increase: float = 0.0
    confidence: float = 0.99
    min_sample: int = 1000
    threshold: float = 0.015  # the absolute budget, for the `threshold` rule
    variance_inflation: float = 1.0


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Outcome:
    """Per rule: when (seconds from the start of the ramp) each rolled-back rollout was rolled back."""

    rollouts: int
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})

    def rate(self, method: str) -> float:
        """The share of rollouts rolled back."""
        return len(self.times[method]) / self.rollouts

    def interval(self, method: str) -> tuple[float, float]:
        """The 95% confidence interval of that share."""
        return wilson(len(self.times[method]), self.rollouts)

    def median(self, method: str) -> float | None:
        times = self.times[method]
        return median(times) if times else None

    def p90(self, method: str) -> float | None:
        times = self.times[method]
        if len(times) < 2:
            return times[0] if times else None
        return quantiles(times, n=10, method="inclusive")[8]


@dataclass(frozen=True)
class Timeline:
    """What a scrape saw at each scrape of the ramp (index 0: the ramp's start), per rollout: the value
    of each counter (arm x code), reset when the app restarted. Shape (rollouts, scrapes + 1)."""

    scrape_s: float
    values: dict[tuple[str, str], Array]  # (variant, code) -> scraped values, 0 before the first increment


def _arm_requests(rng: np.random.Generator, traffic: Traffic, rollouts: int) -> dict[str, tuple[Array, Array]]:
    """Per variant: (errors, requests) arriving in each scrape interval of the ramp, shape (rollouts, n)."""
    bounds = np.cumsum([0.0, *(duration for _, duration in traffic.stages)])
    n = round(bounds[-1] / traffic.scrape_s)
    mid = (np.arange(n) + 0.5) * traffic.scrape_s
    stage = np.searchsorted(bounds, mid, side="right") - 1
    weight = np.array([w for w, _ in traffic.stages])[stage] / 100.0
    rate = traffic.rps * (1.0 - traffic.diurnal * np.cos(2 * np.pi * mid / 86400.0))
    expected = np.broadcast_to(rate * traffic.scrape_s, (rollouts, n))
    if traffic.users is None:
        total = rng.poisson(expected)
        on = rng.binomial(total, weight)
        off = total - on
        return {"on": (rng.binomial(on, traffic.treatment_rate), on),
                "off": (rng.binomial(off, traffic.control_rate), off)}
    # Users keep their variant as the weight grows: the broken ones below each weight are nested.
    broken = rng.binomial(traffic.users, traffic.broken_share, size=rollouts)
    weights = sorted({w for w, _ in traffic.stages})
    below: dict[float, Array] = {}
    taken, last = np.zeros(rollouts, dtype=np.int64), 0.0
    for w in weights:
        taken = taken + rng.binomial(broken - taken, (w - last) / (100.0 - last))
        below[w], last = taken, w
    in_treatment = np.stack([below[w] for w, _ in traffic.stages], axis=1)[:, stage]  # (rollouts, n)
    per_user = expected / traffic.users
    out: dict[str, tuple[Array, Array]] = {}
    for variant, share_of_users, broken_users, rate_ok in (
        ("on", weight, in_treatment, traffic.treatment_rate),
        ("off", 1.0 - weight, broken[:, None] - in_treatment, traffic.control_rate),
    ):
        healthy_users = np.maximum(traffic.users * share_of_users - broken_users, 0)
        healthy, failing = rng.poisson(per_user * healthy_users), rng.poisson(per_user * broken_users)
        errors = rng.binomial(healthy, rate_ok) + rng.binomial(failing, traffic.broken_rate)
        out[variant] = (errors, healthy + failing)
    return out


def timeline(traffic: Traffic, rollouts: int, rng: np.random.Generator) -> Timeline:
    """Draw the ramp's requests and what Prometheus scraped of the app's counters."""
    arms = _arm_requests(rng, traffic, rollouts)
    n = next(iter(arms.values()))[0].shape[1]
    # A restart in an interval loses what was counted in it before the restart, then counts from 0.
    restarted = rng.random((rollouts, n)) < traffic.restarts_per_hour * traffic.scrape_s / 3600.0
    lost_share = np.where(restarted, rng.random((rollouts, n)), 0.0)
    life_start = np.maximum.accumulate(np.where(restarted, np.arange(n), 0), axis=1)
    values: dict[tuple[str, str], Array] = {}
    for variant, (errors, requests) in arms.items():
        for code, counts in (("500", errors), ("200", requests - errors)):
            kept = counts - rng.binomial(counts, lost_share)
            cumulative = np.cumsum(kept, axis=1)
            before = np.take_along_axis(cumulative - kept, life_start, axis=1)  # counted before this life
            scraped = cumulative - before
            values[(variant, code)] = np.concatenate([np.zeros((rollouts, 1), dtype=scraped.dtype), scraped], axis=1)
    return Timeline(traffic.scrape_s, values)


def counted(values: Array, start: int) -> Array:
    """stats/counters.series_increase on scraped values, vectorised: per rollout, what one counter
    counted from the scrape `start` on, cumulative at each later scrape. Shape (rollouts, later scrapes).
    A value of 0 before a series' first increment is no sample; counting it as 0 gives the same."""
    span = values[:, start:].astype(np.float64)
    step = np.diff(span, axis=1)
    step = np.where(step < 0, span[:, 1:], step)  # a drop: a reset, counted from 0
    return np.cumsum(step, axis=1)


def _mixture_z(t: Array, alpha: float, tight_at: float) -> Array:
    log_alpha = -2.0 * math.log(alpha)
    rho2 = (log_alpha + math.log(log_alpha + 1.0)) / max(tight_at, 1.0)
    r = np.maximum(t, 1.0) * rho2
    result: Array = np.sqrt((1.0 + 1.0 / r) * (np.log(r + 1.0) + log_alpha))
    return result


def sequential_fails(te: Array, tn: Array, ce: Array, cn: Array, guardrail: Guardrail, stages: int) -> Array:
    """`sequential.compare(...).decision == FAIL` (difference scale), elementwise."""
    enough = (tn >= guardrail.min_sample) & (cn >= guardrail.min_sample)
    k = guardrail.variance_inflation
    te, tn, ce, cn = te / k, tn / k, ce / k, cn / k
    pt, pc = (te + 1.0) / (tn + 2.0), (ce + 1.0) / (cn + 2.0)
    variance = pt * (1.0 - pt) / (tn + 2.0) + pc * (1.0 - pc) / (cn + 2.0)
    alpha = stage_alpha(guardrail.confidence, stages)
    half = np.sqrt(variance) * _mixture_z(tn, alpha, TIGHT_AT_MULTIPLE * guardrail.min_sample / k)
    result: Array = enough & (pt - pc - half > guardrail.max_increase)
    return result


def _z_fails(te: Array, tn: Array, ce: Array, cn: Array, guardrail: Guardrail) -> Array:
    """baselines.z_test_fails, elementwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pt, pc = te / np.maximum(tn, 1), ce / np.maximum(cn, 1)
        variance = pt * (1 - pt) / np.maximum(tn, 1) + pc * (1 - pc) / np.maximum(cn, 1)
        z = np.where(variance > 0, (pt - pc - guardrail.max_increase) / np.sqrt(variance), 0.0)
    enough = (tn >= guardrail.min_sample) & (cn >= guardrail.min_sample)
    certain = (variance <= 0) & (pt - pc > guardrail.max_increase)
    result: Array = enough & ((z > NormalDist().inv_cdf(guardrail.confidence)) | certain)
    return result


@dataclass(frozen=True)
class StageCounts:
    """The four counts of one stage at each of its looks, per rollout: shape (rollouts, looks); and
    the looks' moments (seconds from the start of the ramp)."""

    treatment_errors: Array
    treatment_total: Array
    control_errors: Array
    control_total: Array
    moments: Array


def stage_counts(drawn: Timeline, traffic: Traffic, stage: int) -> StageCounts:
    """What the operator counts (metrics/compare.py) at each look of one stage of the timeline: the
    scrapes since the stage's start (which is at a scrape), as seen at each look."""
    begin = sum(duration for _, duration in traffic.stages[:stage])
    start = round(begin / traffic.scrape_s)
    looks = np.arange(1, round(traffic.stages[stage][1] / traffic.interval_s) + 1) * traffic.interval_s
    seen = np.floor(looks / traffic.scrape_s + 1e-9).astype(int)  # scrapes since the start, per look
    index = np.maximum(seen, 1) - 1

    def at_looks(variant: str, code: str) -> Array:
        cumulative = counted(drawn.values[(variant, code)], start)
        result: Array = np.where(seen >= 1, cumulative[:, index], 0.0)
        return result

    te, ce = at_looks("on", "500"), at_looks("off", "500")
    return StageCounts(te, te + at_looks("on", "200"), ce, ce + at_looks("off", "200"), begin + looks)


def simulate(
    traffic: Traffic,
    guardrail: Guardrail,
    *,
    rollouts: int,
    seed: int,
    methods: Sequence[str] = METHODS,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Simulate `rollouts` ramps (seeded) and apply each rule to the same counts at every look."""
    drawn = timeline(traffic, rollouts, np.random.default_rng(seed))
    outcome = Outcome(rollouts)
    first: dict[str, Array] = {m: np.full(rollouts, np.inf) for m in methods}
    for stage in range(len(traffic.stages)):
        counts = stage_counts(drawn, traffic, stage)
        te, tn, ce, cn = counts.treatment_errors, counts.treatment_total, counts.control_errors, counts.control_total
        for method in methods:
            if method == "sequential":
                failed = sequential_fails(te, tn, ce, cn, guardrail, len(traffic.stages))
            elif method == "z-test":
                failed = _z_fails(te, tn, ce, cn, guardrail)
            else:
                last_e, last_n = np.diff(te, axis=1, prepend=0.0), np.diff(tn, axis=1, prepend=0.0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    failed = (last_n > 0) & (last_e / np.where(last_n > 0, last_n, 1) > guardrail.threshold)
            when = np.where(failed.any(axis=1), counts.moments[np.argmax(failed, axis=1)], np.inf)
            first[method] = np.minimum(first[method], when)
    for method in methods:
        outcome.times[method] = sorted(float(t) for t in first[method] if np.isfinite(t))
    if progress is not None:
        progress(f"{rollouts} rollouts: " + ", ".join(f"{m} {outcome.rate(m) * 100:.2f}%" for m in methods))
    return outcome
