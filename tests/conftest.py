"""Shared pytest plugins: the real Prometheus factory and the real-process cluster fixtures,
and the Hypothesis profile every property test runs under (tests/hypothesis_profiles.py)."""

from tests import hypothesis_profiles

hypothesis_profiles.load()

pytest_plugins = ["tests.support.fixtures", "tests.support.cluster_fixtures"]
