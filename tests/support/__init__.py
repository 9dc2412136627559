"""Helpers shared by the test suites: a real Prometheus server, and waiting on its answers."""
