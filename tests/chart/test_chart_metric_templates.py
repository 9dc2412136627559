"""The chart's ready ClusterMetricTemplates: the same as examples/metric-templates/, valid for the
models and the CRD, switched by metricTemplates.install; prometheus.address becomes the operator's
--prometheus-address."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from featurerollout import api
from featurerollout.edges.metrics.queries import render_query
from featurerollout.edges.metrics.templates import resolve_metric
from tests.support.paths import REPO

from .chart_support import HELM as HELM_BINARY
from .chart_support import of_kind, render, require_tool

EXAMPLES = REPO / "examples" / "metric-templates"


def examples() -> dict[str, dict[str, object]]:
    return {doc["metadata"]["name"]: doc for doc in (yaml.safe_load(p.read_text()) for p in EXAMPLES.glob("*.yaml"))}


def test_the_chart_installs_the_examples(tmp_path: Path) -> None:
    require_tool(HELM_BINARY)
    rendered = of_kind(render(tmp_path / "helm"), "ClusterMetricTemplate")
    assert sorted(t["metadata"]["name"] for t in rendered) == ["error-rate", "latency-p95"]
    for template in rendered:
        example = examples()[template["metadata"]["name"]]
        assert template["spec"] == example["spec"]
        assert template["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert of_kind(render(tmp_path / "off", sets=["metricTemplates.install=false"]), "ClusterMetricTemplate") == []


def test_prometheus_address_becomes_the_operators_default(tmp_path: Path) -> None:
    require_tool(HELM_BINARY)

    def args(*sets: str) -> list[str]:
        (deployment,) = of_kind(render(tmp_path / "helm", sets=list(sets)), "Deployment")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return list(container["args"])

    assert not any(a.startswith("--prometheus-address") for a in args())
    assert "--prometheus-address=http://prometheus.monitoring:9090" in args(
        "prometheus.address=http://prometheus.monitoring:9090")


@pytest.mark.parametrize("name", ["error-rate", "latency-p95"])
def test_the_examples_are_valid_and_render_for_a_rollout(name: str) -> None:
    template = api.MetricTemplate.model_validate(examples()[name])
    metric = api.Metric.model_validate({"name": name, "templateRef": {"name": name, "kind": "ClusterMetricTemplate"}})
    resolved = resolve_metric(metric, 0, template, "shop")
    # rateWindow: at least 4 of Prometheus's default 1m scrapes (docs/metric-templates.md)
    assert resolved.error is None and resolved.args == {"variant": "on", "rateWindow": "4m"}
    query = render_query(resolved.metric.query or "", flag="new-checkout", name="r", namespace="shop",
                         interval="1m", args=resolved.args)
    assert 'flag="new-checkout",variant="on"' in query and "[4m]" in query and "{{" not in query
    if name == "latency-p95":
        assert query.startswith("histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{")
