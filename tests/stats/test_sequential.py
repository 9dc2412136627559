"""The always-valid comparison of two error rates (featurerollout.stats.sequential). Pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurerollout.stats.baselines import fixed_threshold_fails, z_test_fails
from featurerollout.stats.sequential import (
    Arm,
    Decision,
    compare,
    difference_bounds,
    mixture_z,
    ratio_bounds,
    stage_alpha,
)


def test_below_the_minimum_sample_in_either_arm_is_no_data() -> None:
    worse = compare(Arm(500, 999), Arm(10, 100_000), max_increase=0, min_sample=1000)
    assert worse.decision == Decision.NO_DATA
    assert compare(Arm(500, 5000), Arm(1, 999), max_increase=0, min_sample=1000).decision == Decision.NO_DATA
    assert "not enough sample" in worse.words() and "1000 per arm" in worse.words()


def test_a_clear_doubling_fails_and_says_so() -> None:
    evidence = compare(Arm(190, 10_000), Arm(900, 90_000), max_increase=0, confidence=0.99, min_sample=1000)
    assert evidence.decision == Decision.FAIL
    assert evidence.lower is not None and evidence.lower > 0
    words = evidence.words()
    assert words.startswith("treatment 1.9% of 10000 vs control 1% of 90000: worse")
    assert "99% confidence" in words


def test_equal_rates_pass_without_showing_not_worse_at_a_zero_budget() -> None:
    evidence = compare(Arm(100, 10_000), Arm(900, 90_000), max_increase=0, min_sample=1000)
    assert evidence.decision == Decision.PASS
    assert not evidence.shown_not_worse  # at maxIncrease 0 equal rates can never show "not worse"
    assert "no evidence of harm" in evidence.words()


def test_equal_rates_with_room_in_the_budget_show_not_worse() -> None:
    evidence = compare(Arm(1000, 100_000), Arm(9000, 900_000), max_increase=0.005, min_sample=1000)
    assert evidence.decision == Decision.PASS and evidence.shown_not_worse
    assert "not worse than the budget allows, 99% confidence" in evidence.words()


def test_an_increase_within_the_budget_passes() -> None:
    # +0.3 points, clearly, under a budget of +0.5 points
    evidence = compare(Arm(1300, 100_000), Arm(9000, 900_000), max_increase=0.005, min_sample=1000)
    assert evidence.decision == Decision.PASS
    assert evidence.lower is not None and evidence.lower > 0


def test_ratio_budget() -> None:
    doubled = compare(Arm(200, 10_000), Arm(900, 90_000), max_ratio=1.5, min_sample=1000)
    assert doubled.decision == Decision.FAIL and doubled.scale == "ratio"
    assert "budget at most 1.5x control" in doubled.words()
    slight = compare(Arm(110, 10_000), Arm(900, 90_000), max_ratio=1.5, min_sample=1000)
    assert slight.decision == Decision.PASS


def test_zero_errors_are_finite() -> None:
    for bounds in (difference_bounds, ratio_bounds):
        estimate, lower, upper = bounds(Arm(0, 5000), Arm(0, 45_000), 0.01, 4000)
        assert all(math.isfinite(x) for x in (estimate, lower, upper)) and lower < upper
    # no errors in control and a handful in treatment is no proof of harm
    assert compare(Arm(3, 5000), Arm(0, 45_000), max_increase=0, min_sample=1000).decision == Decision.PASS


def test_exactly_one_budget() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        compare(Arm(1, 10), Arm(1, 10))
    with pytest.raises(ValueError, match="exactly one"):
        compare(Arm(1, 10), Arm(1, 10), max_increase=0.1, max_ratio=2)


def test_alpha_is_split_across_the_stages_with_a_control_arm() -> None:
    assert stage_alpha(0.99, 3) == pytest.approx(0.01 / 3)
    assert stage_alpha(0.99, 0) == pytest.approx(0.01)
    # more stages: a wider interval, so the same data may pass where it failed with one stage
    one = compare(Arm(150, 10_000), Arm(900, 90_000), max_increase=0, min_sample=1000, stages_with_control=1)
    many = compare(Arm(150, 10_000), Arm(900, 90_000), max_increase=0, min_sample=1000, stages_with_control=20)
    assert one.lower is not None and many.lower is not None and many.lower < one.lower


def test_the_boundary_costs_more_than_a_single_look_and_is_nearly_flat() -> None:
    single_look = 2.326  # one-sided z at 99%
    values = [mixture_z(t, 0.01, 4000) for t in (1000, 4000, 40_000, 400_000)]
    assert all(v > single_look for v in values)
    assert max(values) - min(values) < 1.0
    assert min(values) == pytest.approx(mixture_z(4000, 0.01, 4000), rel=0.05)  # tightest near t*


@given(
    te=st.integers(0, 2000), tn=st.integers(1000, 50_000), ce=st.integers(0, 2000), cn=st.integers(1000, 50_000),
    extra=st.integers(1, 500),
)
def test_more_treatment_errors_never_turn_a_failure_into_a_pass(
    te: int, tn: int, ce: int, cn: int, extra: int
) -> None:
    # (The lower bound itself is not monotone near zero errors: one error widens the interval more
    # than it moves the estimate. The decision is what must never improve.)
    te, ce = min(te, tn - extra), min(ce, cn)
    for budget in ({"max_increase": 0.001}, {"max_ratio": 1.2}):
        before = compare(Arm(te, tn), Arm(ce, cn), min_sample=1000, **budget)
        after = compare(Arm(te + extra, tn), Arm(ce, cn), min_sample=1000, **budget)
        assert not (before.decision == Decision.FAIL and after.decision == Decision.PASS)


def test_baselines() -> None:
    assert fixed_threshold_fails(Arm(2, 100), 0.015)
    assert not fixed_threshold_fails(Arm(1, 100), 0.015)
    assert not fixed_threshold_fails(Arm(0, 0), 0.015)
    assert z_test_fails(Arm(190, 10_000), Arm(900, 90_000), max_increase=0, confidence=0.99, min_sample=1000)
    assert not z_test_fails(Arm(100, 10_000), Arm(900, 90_000), max_increase=0, confidence=0.99, min_sample=1000)
