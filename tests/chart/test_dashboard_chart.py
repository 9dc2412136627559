"""The Grafana dashboard in the chart: off by default; on, a ConfigMap that Grafana's dashboard
sidecar picks up by its label, holding the dashboard file as valid JSON. And the dashboard itself:
what Grafana needs of it (unique ids, one data source variable, the panels the operator promises).

Whether each of its PromQL expressions parses and returns data from the operator's own metrics is
tests/edges/metrics/test_dashboard_queries.py, against a real Prometheus scraping the real operator.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest

from tests.support import grafana

from .chart_support import CHART, NAMESPACE, Manifest, helm, of_kind, render

K8S_VERSION = "1.37"
SIDECAR_LABEL = "grafana_dashboard"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def dashboards(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]


def test_no_dashboard_by_default(home: Path) -> None:
    manifests = render(home)
    assert dashboards(manifests) == []
    assert not [m for m in manifests if SIDECAR_LABEL in m["metadata"].get("labels", {})]


def test_enabled_it_is_a_configmap_for_the_sidecar_with_the_dashboard_as_valid_json(home: Path) -> None:
    (configmap,) = dashboards(render(home, sets=["dashboard.enabled=true"]))
    kubernetes_validate.validate(configmap, K8S_VERSION, strict=True)
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"][SIDECAR_LABEL] == "1"  # a string: label values are strings
    assert configmap["metadata"]["labels"]["app.kubernetes.io/part-of"] == "featurerollout"
    (key,) = configmap["data"]
    assert key.endswith(".json")  # the sidecar writes each key as a file; Grafana loads *.json
    shipped = json.loads(configmap["data"][key])
    assert shipped == json.loads(grafana.DASHBOARD.read_text())  # the file, untouched by templating


def test_label_namespace_and_annotations_are_configurable(home: Path) -> None:
    (configmap,) = dashboards(render(home, sets=[
        "dashboard.enabled=true", "dashboard.label=team_dashboards", "dashboard.labelValue=operators",
        "dashboard.namespace=monitoring", "dashboard.annotations.grafana_folder=Operators",
    ]))
    metadata = configmap["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["team_dashboards"] == "operators" and SIDECAR_LABEL not in metadata["labels"]
    assert metadata["annotations"] == {"grafana_folder": "Operators"}


def test_helm_lint_strict_passes_with_the_dashboard_on(home: Path) -> None:
    helm(home, "lint", "--strict", str(CHART), "--set", "dashboard.enabled=true")


# --- the dashboard file ------------------------------------------------------------------------


def test_the_dashboard_is_what_grafana_expects() -> None:
    dashboard = grafana.load()
    assert dashboard["uid"] == "featurerollout"  # a fixed uid: a re-import updates it, not duplicates it
    panels = list(grafana.panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip()
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_shows_what_the_operator_promises() -> None:
    """Issue 13: rollouts by phase; each rollout's weight over time with rollbacks marked; analysis
    lag and errors; API writes and leader changes."""
    dashboard = grafana.load()
    by_title = {p["title"]: p for p in grafana.panels(dashboard)}
    text = {title: " ".join(t["expr"] for t in p.get("targets", [])) for title, p in by_title.items()}
    assert "featurerollout_phase" in text["Rollouts by phase"]
    assert "featurerollout_weight_percent" in text["Weight by rollout (rollbacks marked)"]
    assert "featurerollout_analysis_lag_seconds_bucket" in text["Analysis lag"]
    assert "featurerollout_analysis_errors_total" in text["Analysis errors"]
    assert "featurerollout_status_writes_total" in text["API writes"]
    assert "featurerollout_target_writes_total" in text["API writes"]
    assert "featurerollout_leader_transitions_total" in text["Leaders and leader changes"]
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert "featurerollout_rollbacks_total" in annotations["Rollbacks"]["expr"]
    assert annotations["Rollbacks"]["enable"] is True
    # every expression uses only variables the dashboard defines, or Grafana's own
    defined = {v["name"] for v in dashboard["templating"]["list"]} | {"__rate_interval", "__interval", "__range"}
    for expression in grafana.expressions(dashboard):
        grafana.substitute(expression.expr, {name: "x" for name in defined})
