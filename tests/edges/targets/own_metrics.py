"""The operator's own /metrics, read by tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metrics_text(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def operator_metric(port: int, metric_name: str, /, **labels: str) -> float:
    """One sample (0 when the series is absent)."""
    for family in text_string_to_metric_families(metrics_text(port)):
        for sample in family.samples:
            if sample.name == metric_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
