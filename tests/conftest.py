"""Shared pytest plugins: the real Prometheus factory and the real-process cluster fixtures."""

pytest_plugins = ["tests.support.fixtures", "tests.support.cluster_fixtures"]
