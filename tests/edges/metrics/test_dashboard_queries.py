"""Every PromQL expression of the chart's Grafana dashboard, against a real Prometheus that scrapes
the real operator after it has done real work.

The real operator (`featurerollout run --metrics-port 0`; the port from its log line) runs on the
API server of the `cluster` fixture with four rollouts: one promoted to its second stage, one
promoted and then rolled back by a budget breach, one whose query Prometheus refuses (analysis
errors), one whose ConfigMap does not exist (target errors). A real Prometheus scrapes the
operator and a small exporter (the rollouts' metric) every second. Then every expression of the
dashboard (panel targets, annotations, and the selectors of its template variables), with
Grafana's variables replaced by concrete values, must parse (no error from /api/v1/query) and
return data: at least one series with a number that is not NaN.

Some expressions read metrics that other parts of issue 13 add (leader election, coalesced
writes, batched queries, analysis lag): until the operator exports them, they return nothing and
the failure names the metric the operator does not export.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from tests.support import grafana
from tests.support.cluster import REPO, Cluster, OperatorFactory, Process, featurerollout_command, wait_until
from tests.support.fixtures import PrometheusFactory
from tests.support.prometheus import free_port, query

from featurerollout import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.integration

ROLLOUTS = ("steady", "risky", "broken-query", "no-target")
# Grafana's variables, as it would fill them in: the namespace and rollouts picked (a multi-value
# variable becomes a regex alternation), and intervals for a dashboard over the last few minutes.
VARIABLES = {
    "namespace": "default",
    "rollout": "(" + "|".join(ROLLOUTS) + ")",
    "__rate_interval": "5m",
    "__interval": "15s",
    "__range": "1h",
}
FLAGS_DOC = json.dumps({"flags": {}})
METRICS_LINE = re.compile(r"serving the operator's metrics on :(\d+)/metrics")


@pytest.fixture
def error_ratio() -> Iterator[tuple[str, Gauge]]:
    """A /metrics endpoint whose `demo_error_ratio{flag}` the test sets: the rollouts' metric."""
    registry = CollectorRegistry()
    gauge = Gauge("demo_error_ratio", "Error ratio of the flagged variant.", ["flag"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", gauge
    finally:
        server.shutdown()
        thread.join(5)


def leader_election_flags() -> list[str]:
    """Run the operator as replicas run it: with leader election where this operator has it (so
    that the leader metrics exist), else `--standalone`, the only mode before it."""
    done = subprocess.run(featurerollout_command("run", "--help"), capture_output=True, text=True, timeout=60)
    return ["--lease-namespace", "default"] if "--lease-namespace" in done.stdout else ["--standalone"]


def start_operator(cluster: Cluster, operator: OperatorFactory, tmp_path: Path) -> tuple[Process, int]:
    process = Process(
        featurerollout_command("run", "--kubeconfig", str(cluster.kubeconfig), "--metrics-port", "0",
                               *leader_election_flags()),
        tmp_path / "operator.log",
    ).start()
    operator.started.append(process)  # stopped, and its log shown on failure, by the fixture
    port = wait_until(lambda: (m := METRICS_LINE.search(process.log())) and int(m.group(1)), 60,
                      "the operator's metrics port in its log")
    return process, int(port)


def status(cluster: Cluster, name: str) -> dict[str, Any]:
    body = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    return body.get("status") or {}


def make_rollout(cluster: Cluster, name: str, **spec: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FeatureRollout",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"flag": name, "target": {"configMap": {"name": "feature-flags"}}, **spec}}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)


def analysis(prometheus_url: str, query_text: str, **extra: Any) -> dict[str, Any]:
    return {"interval": "1s", "prometheus": {"address": prometheus_url, "timeout": "2s"},
            "metrics": [{"name": "error-rate", "query": query_text, "max": 0.05}], **extra}


def exported_names(metrics_port: int) -> set[str]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def finite_series(result: Any) -> list[dict[str, Any]]:
    """The series of an instant query's vector that hold a number (not NaN)."""
    return [s for s in result if not math.isnan(float(s["value"][1]))]


def query_range(url: str, promql: str, start: float, end: float) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query_range",
                       params={"query": promql, "start": start, "end": end, "step": "1s"}, timeout=10).json()
    assert answer["status"] == "success", f"{promql}: {answer.get('error')}"
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_every_dashboard_expression_parses_and_returns_data_from_the_operator(
    cluster: Cluster, operator: OperatorFactory, prometheus_server: PrometheusFactory,
    error_ratio: tuple[str, Gauge], tmp_path: Path,
) -> None:
    exporter, ratio = error_ratio
    began = time.time()
    cluster.core.create_namespaced_config_map("default", {"metadata": {"name": "feature-flags"},
                                                          "data": {"flags.flagd.json": FLAGS_DOC}})
    _, metrics_port = start_operator(cluster, operator, tmp_path)
    prometheus = prometheus_server({"app": [exporter], "operator": [f"127.0.0.1:{metrics_port}"]})
    for flag in ("steady", "risky"):
        ratio.labels(flag).set(0.01)
    gauge_query = 'max(demo_error_ratio{flag="{{flag}}"})'
    make_rollout(cluster, "steady", stages=[{"weight": 10, "duration": "2s"}, {"weight": 50, "duration": "1h"},
                                            {"weight": 100}], analysis=analysis(prometheus.url, gauge_query))
    make_rollout(cluster, "risky", stages=[{"weight": 10, "duration": "2s"}, {"weight": 25, "duration": "1h"},
                                           {"weight": 100}], analysis=analysis(prometheus.url, gauge_query))
    make_rollout(cluster, "broken-query", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}],
                 analysis=analysis(prometheus.url, "sum(", onError="Pause"))
    make_rollout(cluster, "no-target", target={"configMap": {"name": "missing-flags"}}, stages=[{"weight": 100}])

    wait_until(lambda: status(cluster, "risky").get("currentWeight") == 25, 90, "risky to reach 25%")
    # Let Prometheus see the 25% before the breach, so that the weight panel has the step to show.
    wait_until(lambda: query(prometheus.url, 'featurerollout_weight_percent{name="risky"}').value == 25, 60,
               "Prometheus to scrape risky at 25%")
    ratio.labels("risky").set(0.4)
    rolled_back = wait_until(lambda: (s := status(cluster, "risky")).get("phase") == "RolledBack"
                             and s.get("currentWeight") == 0 and s, 60, "risky to be rolled back to 0%")
    wait_until(lambda: status(cluster, "steady").get("currentWeight") == 50, 60, "steady to reach 50%")
    wait_until(lambda: any(m.get("result") == "Error" for m in status(cluster, "broken-query").get("metrics", [])),
               60, "broken-query's analysis to error")
    wait_until(lambda: any(c["type"] == "Degraded" and c.get("reason") == "TargetNotFound"
                           for c in status(cluster, "no-target").get("conditions", [])),
               60, "no-target's target error")

    # The rollback marker lands where the rollback happened, and the weight panel shows the drop.
    annotation = next(a for a in grafana.load()["annotations"]["list"] if a["name"] == "Rollbacks")
    rollbacks = grafana.substitute(annotation["expr"], VARIABLES)

    def risky_marks() -> list[dict[str, Any]]:
        return [m for m in query_range(prometheus.url, rollbacks, began, time.time())
                if m["metric"].get("name") == "risky"]

    (risky_mark,) = wait_until(risky_marks, 60, "the rollback's mark in the annotation's range query")
    assert risky_mark["metric"]["reason"] == "BudgetExceeded"
    halted_at = datetime.fromisoformat(rolled_back["halt"]["at"].replace("Z", "+00:00")).timestamp()
    first_mark = float(risky_mark["values"][0][0])
    # within the scrape interval and the status write's round trip; generous on a loaded machine
    assert halted_at - 2 <= first_mark <= halted_at + 15, (first_mark, halted_at)
    others = [m for m in query_range(prometheus.url, rollbacks, began, time.time()) if m["metric"]["name"] != "risky"]
    assert others == []  # nothing else rolled back
    weight_panel = next(p for p in grafana.panels(grafana.load()) if p["title"].startswith("Weight by rollout"))
    weight_query = grafana.substitute(weight_panel["targets"][0]["expr"], VARIABLES)

    def risky_weights() -> list[float]:
        series = [w for w in query_range(prometheus.url, weight_query, began, time.time())
                  if w["metric"]["name"] == "risky"]
        seen = [float(v) for _, v in series[0]["values"]] if series else []
        steps = [w for i, w in enumerate(seen) if i == 0 or w != seen[i - 1]]
        return steps if steps and steps[-1] == 0 else []

    steps = wait_until(risky_weights, 60, "the weight panel to show risky back at 0")
    assert steps[-1] == 0 and 25 in steps and steps.index(25) < len(steps) - 1, steps

    # `featurerollout list` says the same as the dashboard, from the statuses the operator wrote.
    done = subprocess.run(featurerollout_command("list", "-o", "json", "--kubeconfig", str(cluster.kubeconfig)),
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    items = {item["name"]: item for item in json.loads(done.stdout)["items"]}
    assert items["risky"]["phase"] == "RolledBack" and items["risky"]["weight"] == 0
    assert items["risky"]["lastVerdict"] == "Failed: error-rate 0.4 > 0.05"
    assert items["steady"]["stage"] == "2/3" and items["steady"]["lastVerdict"] == "Passed"
    assert items["broken-query"]["lastVerdict"].startswith("Error: error-rate (")

    # Every expression parses at once, and returns data once Prometheus has scraped the operator a
    # few times (a rate needs two samples).
    expressions = grafana.expressions(grafana.load())
    assert len(expressions) >= 20
    pending = {e.where: e for e in expressions}
    last: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for where, expression in list(pending.items()):
            promql = grafana.substitute(expression.expr, VARIABLES)
            answer = query(prometheus.url, promql)  # raises with Prometheus's message on a parse error
            found = finite_series(answer.result) if answer.result_type == "vector" else []
            if expression.label is not None:  # a variable: the series must carry the label it offers
                found = [s for s in found if s["metric"].get(expression.label)]
            last[where] = answer.result
            if found:
                del pending[where]
        time.sleep(1)
    if pending:
        exported = exported_names(metrics_port)
        lines = []
        for where, expression in pending.items():
            missing = sorted({n for n in re.findall(r"featurerollout_\w+", expression.expr) if n not in exported})
            why = f"the operator exports no {', '.join(missing)}" if missing else f"last answer {last.get(where)}"
            lines.append(f"{where}: no data ({why})\n    {grafana.substitute(expression.expr, VARIABLES)}")
        pytest.fail(f"{len(pending)} of {len(expressions)} dashboard expressions return no data:\n"
                    + "\n".join(lines), pytrace=False)
