"""The suite runs its property tests under the explicit CI profile (tests/hypothesis_profiles.py)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def test_the_ci_profile_is_loaded_by_default() -> None:
    expected = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert settings.get_current_profile_name() == expected
    assert settings.default.deadline is None


def test_only_the_machine_dependent_health_check_is_off() -> None:
    assert list(settings.default.suppress_health_check) == [HealthCheck.too_slow]
    for kept in (HealthCheck.filter_too_much, HealthCheck.data_too_large, HealthCheck.large_base_example):
        assert kept not in settings.default.suppress_health_check
