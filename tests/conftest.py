"""Shared pytest plugins: the real Prometheus factory fixture lives in tests/support/fixtures.py."""

pytest_plugins = ["tests.support.fixtures"]
