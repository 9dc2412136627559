"""The analysis tests' exporter (a gauge the test sets) and the real Prometheus scraping it."""

from tests.process.analysis.test_analysis import exporter, prometheus  # noqa: F401
