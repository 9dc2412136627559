"""Prometheus analysis and automatic rollback, end to end.

The real operator process, the sandbox, and a real Prometheus server (1 s scrape) scraping
either the demo service (real request counters by flag variant) or a small exporter whose
error ratio the test sets directly, so that the moment a breach shows in Prometheus is known.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, Process, featurerollout_command, wait_until
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, free_port, query, start_prometheus
from tests.support.rollouts import (
    document,
    events_of,
    make_configmap,
    make_rollout,
    status,
    wait_phase,
    wait_rolled_back,
)

pytestmark = pytest.mark.integration

GAUGE_QUERY = 'max(demo_error_ratio{flag="{{flag}}"})'


@dataclass
class Exporter:
    """A /metrics endpoint whose `demo_error_ratio{flag}` the test sets."""

    port: int
    ratio: Gauge

    def set(self, flag: str, value: float) -> None:
        self.ratio.labels(flag).set(value)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    ratio = Gauge("demo_error_ratio", "Error ratio of the flagged variant.", ["flag"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    try:
        yield Exporter(port, ratio)
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def prometheus(tmp_path: Path, exporter: Exporter) -> Iterator[PrometheusServer]:
    require_prometheus()
    with start_prometheus(tmp_path / "prometheus", [exporter.target]) as server:
        yield server


def analysis(prometheus: PrometheusServer, *, query_text: str = GAUGE_QUERY, max_: float = 0.05,
             failure_limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "interval": "1s",
        "prometheus": {"address": prometheus.url, "timeout": "2s"},
        "metrics": [{"name": "error-rate", "query": query_text, "max": max_, "failureLimit": failure_limit}],
        **extra,
    }


def operator_metric(port: int, metric_name: str, /, **labels: str) -> float:
    """One sample from the operator's own /metrics (0 when the series is absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def assert_operator_metric(port: int, metric_name: str, expected: float, /, **labels: str) -> None:
    """The operator's own metric reaches `expected` (it is updated just after the status write)."""
    wait_until(lambda: operator_metric(port, metric_name, **labels) == expected, 10,
               f"{metric_name}{labels} == {expected} (now {operator_metric(port, metric_name, **labels)})")


def wait_for_series(prometheus: PrometheusServer, promql: str, predicate: Any, timeout: float = 20) -> float:
    """Wait until Prometheus itself answers `promql` with a value that satisfies `predicate`;
    returns the moment it first did."""
    def check() -> bool:
        result = query(prometheus.url, promql)
        return result.value is not None and bool(predicate(result.value))

    wait_until(check, timeout, f"Prometheus to answer {promql}", interval=0.05)
    return time.time()


def test_healthy_rollout_with_analysis_succeeds_through_every_stage(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    """The demo service serves real traffic by flag variant; Prometheus scrapes its counters."""
    require_prometheus()
    make_configmap(cluster)
    port = free_port()
    service = Process(
        [sys.executable, "-m", "featurerollout_demo.service", "--port", str(port), "--flag", "healthy",
         "--on-error-rate", "0.0", "--off-error-rate", "0.0", "--rps", "50",
         "--kubeconfig", str(cluster.kubeconfig), "--namespace", "default", "--configmap", "feature-flags"],
        tmp_path / "service.log",
    ).start()
    with ExitStack() as stack:
        stack.callback(service.stop)
        prometheus = stack.enter_context(start_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"]))
        error_rate = (
            # The service never fails, so (as a client library) it never creates the 5xx series:
            # `or vector(0)` counts it as zero errors, as the documented queries do.
            '(sum(rate(http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}[5s])) or vector(0))'
            ' / sum(rate(http_requests_total{flag="{{flag}}",variant="on"}[5s]))'
        )
        operator()
        make_rollout(
            cluster, "healthy",
            stages=[{"weight": 10, "duration": "3s"}, {"weight": 25, "duration": "3s"},
                    {"weight": 50, "duration": "3s"}, {"weight": 100, "duration": "3s"}],
            analysis=analysis(prometheus, query_text=error_rate, onNoData="Hold"),
        )
        final = wait_phase(cluster, "healthy", "Succeeded", timeout=90)
    assert final["currentWeight"] == 100
    assert read_flag_weight(document(cluster), "healthy") == 100
    (metric,) = final["metrics"]
    assert metric["name"] == "error-rate" and metric["result"] == "Passed" and metric["value"] == 0
    reasons = wait_until(lambda: (r := [e.reason for e in events_of(cluster, "healthy")]) and r[-1] == "Succeeded"
                         and r, 10, "the Succeeded event")
    assert reasons.count("StageAdvanced") == 3


def test_breach_at_25_percent_rolls_back_within_the_failure_budget(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer
) -> None:
    make_configmap(cluster)
    exporter.set("risky", 0.01)
    metrics_port = free_port()
    operator("--metrics-port", str(metrics_port))
    failure_limit, interval = 1, 1.0
    make_rollout(
        cluster, "risky",
        stages=[{"weight": 10, "duration": "2s"}, {"weight": 25, "duration": "1h"}, {"weight": 100}],
        analysis=analysis(prometheus, failure_limit=failure_limit),
    )
    wait_until(lambda: status(cluster, "risky").get("currentWeight") == 25, 30, "the rollout to reach 25%")
    exporter.set("risky", 0.4)
    breach_seen = wait_for_series(prometheus, 'max(demo_error_ratio{flag="risky"})', lambda v: v > 0.05)
    wait_until(lambda: read_flag_weight(document(cluster), "risky") == 0, 30, "the flag to go back to 0%",
               interval=0.02)
    rolled_back = time.time()
    assert rolled_back - breach_seen <= (failure_limit + 1) * interval + 2
    final = wait_rolled_back(cluster, "risky", timeout=10)
    assert final["currentWeight"] == 0
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "BudgetExceeded"
    assert "error-rate" in degraded["message"] and "0.4" in degraded["message"] and "0.05" in degraded["message"]
    warning = wait_until(
        lambda: [e for e in events_of(cluster, "risky") if e.type == "Warning" and e.reason == "RolledBack"],
        10, "the Warning event",
    )[0]
    assert "error-rate" in warning.message and "0.4" in warning.message and "0.05" in warning.message
    (metric,) = final["metrics"]
    assert metric["result"] == "Failed" and metric["consecutiveFailures"] == failure_limit + 1
    # The operator's own log says the same: the metric, its value and its budget.
    # (The log line follows the status write, like the Event: wait for it, don't race it.)
    line = wait_until(
        lambda: next((line for line in operator.started[0].log().splitlines()
                      if "default/risky" in line and "rolled back" in line.lower()), None),
        10, "the operator's rollback log line",
    )
    assert "error-rate" in line and "0.4" in line and "0.05" in line
    # The operator's own metrics record it too.
    rollout = {"namespace": "default", "name": "risky"}
    assert_operator_metric(metrics_port, "featurerollout_rollbacks_total", 1, reason="BudgetExceeded", **rollout)
    assert_operator_metric(metrics_port, "featurerollout_weight_percent", 0, flag="risky", **rollout)
    assert_operator_metric(metrics_port, "featurerollout_phase", 1, phase="RolledBack", **rollout)
    assert_operator_metric(metrics_port, "featurerollout_promotions_total", 1, **rollout)
    # It stays rolled back and waits for a person, even once the metric recovers.
    exporter.set("risky", 0.0)
    time.sleep(3)
    assert status(cluster, "risky")["phase"] == "RolledBack"
    assert read_flag_weight(document(cluster), "risky") == 0


def test_no_data_under_hold_never_advances_until_data_arrives(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer
) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(
        cluster, "quiet",
        stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}],
        analysis=analysis(prometheus, onNoData="Hold"),
    )
    wait_until(lambda: status(cluster, "quiet").get("currentWeight") == 10, 20, "the first stage")
    time.sleep(5)  # five evaluations past a 1 s hold, all without data
    held = status(cluster, "quiet")
    assert (held["phase"], held["currentWeight"]) == ("Progressing", 10)
    assert held["metrics"][0]["result"] == "NoData"
    assert next(c for c in held["conditions"] if c["type"] == "Analysis")["reason"] == "NoData"
    exporter.set("quiet", 0.0)
    wait_phase(cluster, "quiet", "Succeeded", timeout=20)


def start_then_stop_prometheus(cluster: Cluster, prometheus: PrometheusServer, name: str, error_limit: int) -> None:
    """A two-stage rollout reaches its first stage; then Prometheus goes away."""
    make_rollout(
        cluster, name,
        stages=[{"weight": 10, "duration": "2s"}, {"weight": 100}],
        analysis=analysis(prometheus, consecutiveErrorLimit=error_limit),
    )
    wait_until(lambda: status(cluster, name).get("currentWeight") == 10, 20, "the first stage")
    prometheus.process.terminate()
    prometheus.process.wait(10)


def test_prometheus_outage_never_promotes_and_rolls_back_after_the_error_limit(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer
) -> None:
    make_configmap(cluster)
    exporter.set("blind", 0.0)
    metrics_port = free_port()
    operator("--metrics-port", str(metrics_port))
    start_then_stop_prometheus(cluster, prometheus, "blind", error_limit=3)
    final = wait_rolled_back(cluster, "blind", timeout=30)
    assert read_flag_weight(document(cluster), "blind") == 0
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AnalysisError"
    assert "unreachable" in degraded["message"]
    (metric,) = final["metrics"]
    assert metric["result"] == "Error" and metric["consecutiveErrors"] == 4
    blind = {"namespace": "default", "name": "blind"}
    assert_operator_metric(metrics_port, "featurerollout_analysis_errors_total", 4, metric="error-rate", **blind)
    assert_operator_metric(metrics_port, "featurerollout_rollbacks_total", 1, reason="AnalysisError", **blind)
    # 10% was never exceeded while Prometheus was down.
    writes = [r for r in cluster.log.requests(resource="configmaps", name="feature-flags")
              if r["verb"] == "update" and r["status"] < 300]
    assert len(writes) == 2  # 10%, then 0%


def test_prometheus_back_in_time_lets_the_rollout_recover(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    make_configmap(cluster)
    exporter.set("patient", 0.0)
    operator()
    start_then_stop_prometheus(cluster, prometheus, "patient", error_limit=30)
    wait_until(lambda: status(cluster, "patient")["metrics"][0]["result"] == "Error", 10, "an errored evaluation")
    time.sleep(3)
    during = status(cluster, "patient")
    assert (during["phase"], during["currentWeight"]) == ("Progressing", 10)  # no promotion while blind
    assert next(c for c in during["conditions"] if c["type"] == "Analysis")["reason"] == "Error"
    with start_prometheus(tmp_path / "prometheus", [exporter.target], port=prometheus.port):
        final = wait_phase(cluster, "patient", "Succeeded", timeout=40)
    assert final["metrics"][0]["consecutiveErrors"] == 0


def test_invalid_promql_is_a_clear_condition_and_never_promotes(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer
) -> None:
    make_configmap(cluster)
    operator()
    make_rollout(
        cluster, "typo",
        stages=[{"weight": 10, "duration": "1s"}, {"weight": 100}],
        analysis=analysis(prometheus, query_text="sum(rate(http_requests_total[1m]) /", consecutiveErrorLimit=100),
    )
    analysis_condition = wait_until(
        lambda: next((c for c in status(cluster, "typo").get("conditions", [])
                      if c["type"] == "Analysis" and c["reason"] == "Error"), None),
        20, "an Analysis=False Error condition",
    )
    with pytest.raises(RuntimeError) as prometheus_says:
        query(prometheus.url, "sum(rate(http_requests_total[1m]) /")
    own_words = str(prometheus_says.value).split('invalid parameter "query": ')[1]
    assert own_words == "1:36: parse error: unclosed left parenthesis"
    assert own_words in analysis_condition["message"]
    time.sleep(3)
    held = status(cluster, "typo")
    assert (held["phase"], held["currentWeight"]) == ("Progressing", 10)
    assert "parse error" in held["metrics"][0]["message"]
    warnings = [e for e in events_of(cluster, "typo") if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["AnalysisError"]  # once, not every second


def test_status_command_shows_metrics_against_budgets(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer
) -> None:
    make_configmap(cluster)
    exporter.set("shown", 0.002)
    operator()
    make_rollout(cluster, "shown", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}],
                 analysis=analysis(prometheus, max_=0.01))
    wait_until(lambda: (status(cluster, "shown").get("metrics") or [{}])[0].get("result") == "Passed", 20,
               "a passed evaluation")
    result = subprocess.run(
        featurerollout_command("status", "shown", "-n", "default", "--kubeconfig", str(cluster.kubeconfig)),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("error-rate"))
    assert row.split() == ["error-rate", "0.002", "<=", "0.01", "Passed", "0/1"]
