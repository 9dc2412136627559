"""Shared pytest plugins: the real Prometheus factory and the real-process cluster fixtures, a
run stopped by SIGTERM/SIGHUP that still tears every fixture down (tests/support/termination.py),
and the Hypothesis profile every property test runs under (tests/hypothesis_profiles.py)."""

from tests import hypothesis_profiles

hypothesis_profiles.load()

pytest_plugins = ["tests.support.fixtures", "tests.support.cluster_fixtures", "tests.support.termination"]
