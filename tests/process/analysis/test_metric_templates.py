"""Metric templates, end to end: the real operator process (`featurerollout run`), the real API server
(`cluster`), a real Prometheus scraping a real exporter, and a recording proxy on loopback in front
of Prometheus that keeps every query Prometheus was actually sent.

- two rollouts share one ClusterMetricTemplate with different args: Prometheus receives exactly the
  queries the template renders to, and each rollout records the template and its generation;
- a missing template, or a missing argument, is an analysis error with a clear condition: no
  promotion, however long the stage has been held (and no rollback within consecutiveErrorLimit);
- editing the template changes the next evaluation's query and the recorded generation, and is
  not a change of plan (the stage clock goes on);
- `--prometheus-address` serves rollouts and templates that name no Prometheus; without it, such a
  rollout says so and does not promote.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from featurerollout import GROUP, VERSION
from featurerollout.edges.metrics import nodata
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, free_port, start_prometheus
from tests.support.rollouts import events_of, make_configmap, make_rollout, status

pytestmark = pytest.mark.integration

TEMPLATE_QUERY = 'max(tmpl_value{flag="{{flag}}",variant="{{args.variant}}"}) * {{args.scale}}'


class RecordingProxy:
    """A loopback HTTP proxy to Prometheus that records the PromQL of every query it forwards."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.queries: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, body: bytes) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(parsed.query) | urllib.parse.parse_qs(body.decode())
                if parsed.path.endswith("/query") and "query" in params:
                    with proxy._lock:
                        proxy.queries.extend(params["query"])
                headers = {"Content-Type": self.headers.get("Content-Type", "")} if body else {}
                answer = httpx.request(self.command, proxy.upstream + self.path, content=body or None,
                                       headers=headers, timeout=10)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[str]:
        with self._lock:
            return list(self.queries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def values() -> Iterator[Gauge]:
    """`tmpl_value{flag, variant}`, set by the test, on a real /metrics endpoint."""
    registry = CollectorRegistry()
    gauge = Gauge("tmpl_value", "A value per flag and variant.", ["flag", "variant"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    gauge.port = port  # type: ignore[attr-defined]
    try:
        yield gauge
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def prometheus(tmp_path: Path, values: Gauge) -> Iterator[PrometheusServer]:
    require_prometheus()
    with start_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{values.port}"]) as server:  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def proxy(prometheus: PrometheusServer) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(prometheus.url)
    try:
        yield recording
    finally:
        recording.close()


@pytest.fixture
def cluster_templates(cluster: Cluster) -> Iterator[list[str]]:
    """ClusterMetricTemplates the test made; deleted afterwards (the fixtures empty namespaces only)."""
    made: list[str] = []
    yield made
    for name in made:
        with contextlib.suppress(Exception):  # already gone
            cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", name)


def make_cluster_template(cluster: Cluster, made: list[str], name: str, **spec: Any) -> None:
    cluster.custom.create_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterMetricTemplate", "metadata": {"name": name},
        "spec": spec,
    })
    made.append(name)


def templated_analysis(template: str, args: dict[str, str] | None, **extra: Any) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": "value", "templateRef": {"name": template, "kind": "ClusterMetricTemplate"}}
    if args is not None:
        metric["args"] = args
    return {"interval": "1s", "metrics": [metric], **extra}


def without_no_data_parts(queries: list[str], rendered: set[str]) -> list[str]:
    """The queries received, less the parts of a rendered query that a NoData answer has the
    operator ask on their own (metrics/nodata.py: before the first scrape, the value is NoData)."""
    parts = {part for query in rendered for part in nodata.parts_to_ask(query)} - rendered
    return [query for query in queries if query not in parts]


def metric_status(cluster: Cluster, name: str) -> dict[str, Any]:
    metrics = status(cluster, name).get("metrics") or [{}]
    return metrics[0]  # type: ignore[no-any-return]


def analysis_condition(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return next((c for c in status(cluster, name).get("conditions", []) if c["type"] == "Analysis"), None)


TWO_STAGES = [{"weight": 10, "duration": "2s"}, {"weight": 100, "duration": "2s"}]


def test_two_rollouts_share_one_cluster_template_with_different_args(
    cluster: Cluster, operator: OperatorFactory, values: Gauge, prometheus: PrometheusServer,
    proxy: RecordingProxy, cluster_templates: list[str],
) -> None:
    values.labels("alpha", "on").set(0.002)
    values.labels("beta", "canary").set(0.004)
    make_cluster_template(
        cluster, cluster_templates, "shared-value", query=TEMPLATE_QUERY,
        args=[{"name": "variant"}, {"name": "scale", "value": "1"}], max=0.01, failureLimit=0,
        prometheus={"address": proxy.url, "timeout": "5s"},
    )
    make_configmap(cluster)
    operator()
    make_rollout(cluster, "alpha", stages=TWO_STAGES, analysis=templated_analysis("shared-value", {"variant": "on"}))
    make_rollout(cluster, "beta", stages=TWO_STAGES,
                 analysis=templated_analysis("shared-value", {"variant": "canary", "scale": "2"}))

    for name in ("alpha", "beta"):
        wait_until(lambda n=name: status(cluster, n).get("phase") == "Succeeded", 90, f"{name} to succeed")
    rendered = {
        'max(tmpl_value{flag="alpha",variant="on"}) * 1',
        'max(tmpl_value{flag="beta",variant="canary"}) * 2',
    }
    received = set(without_no_data_parts(proxy.received(), rendered))
    assert received == rendered, proxy.received()
    alpha, beta = metric_status(cluster, "alpha"), metric_status(cluster, "beta")
    assert alpha["value"] == pytest.approx(0.002) and beta["value"] == pytest.approx(0.008)
    for recorded in (alpha, beta):
        assert recorded["result"] == "Passed"
        assert recorded["template"] == {"kind": "ClusterMetricTemplate", "name": "shared-value", "generation": 1}


def test_a_missing_template_or_argument_holds_with_a_clear_condition(
    cluster: Cluster, operator: OperatorFactory, values: Gauge, prometheus: PrometheusServer,
    proxy: RecordingProxy, cluster_templates: list[str],
) -> None:
    values.labels("nameless", "on").set(0)
    make_cluster_template(cluster, cluster_templates, "needs-args", query=TEMPLATE_QUERY,
                          args=[{"name": "variant"}, {"name": "scale"}], max=0.01)
    make_configmap(cluster)
    operator("--prometheus-address", proxy.url)
    # A high consecutiveErrorLimit: the point is that errors never promote, over many evaluations.
    make_rollout(cluster, "orphan", stages=TWO_STAGES,
                 analysis=templated_analysis("no-such-template", {"variant": "on"}, consecutiveErrorLimit=100))
    make_rollout(cluster, "nameless", stages=TWO_STAGES,
                 analysis=templated_analysis("needs-args", {"variant": "on"}, consecutiveErrorLimit=100))

    for name, words in (
        ("orphan", "ClusterMetricTemplate no-such-template not found (spec.analysis.metrics[0].templateRef)"),
        ("nameless", "spec.analysis.metrics[0].args: ClusterMetricTemplate needs-args needs 'scale'"),
    ):
        # Several evaluations, each an error, well past the first stage's 2 s: never promoted.
        wait_until(lambda n=name: (metric_status(cluster, n).get("consecutiveErrors") or 0) >= 5, 60,
                   f"five errored evaluations of {name}")
        current = status(cluster, name)
        assert current["phase"] == "Progressing" and current["currentWeight"] == 10 and current["stage"] == "1/2"
        condition = analysis_condition(cluster, name)
        assert condition is not None and condition["status"] == "False" and condition["reason"] == "Error"
        assert words in condition["message"], condition
        assert metric_status(cluster, name)["result"] == "Error"
    # Neither was ever sent to Prometheus.
    assert proxy.received() == []
    assert metric_status(cluster, "orphan")["template"] == {"kind": "ClusterMetricTemplate", "name": "no-such-template"}
    assert metric_status(cluster, "nameless")["template"]["generation"] == 1

    # Once the template exists, the next evaluation uses it and the rollout carries on.
    values.labels("orphan", "on").set(0.001)
    make_cluster_template(cluster, cluster_templates, "no-such-template", query=TEMPLATE_QUERY,
                          args=[{"name": "variant"}, {"name": "scale", "value": "1"}], max=0.01)
    wait_until(lambda: status(cluster, "orphan").get("phase") == "Succeeded", 60, "orphan to succeed")
    assert status(cluster, "nameless")["currentWeight"] == 10


def test_editing_the_template_changes_the_next_evaluation_and_the_recorded_generation(
    cluster: Cluster, operator: OperatorFactory, values: Gauge, prometheus: PrometheusServer,
    proxy: RecordingProxy, cluster_templates: list[str],
) -> None:
    values.labels("edited", "on").set(0.003)
    # No provider in the template and none in the rollout: --prometheus-address serves both.
    make_cluster_template(cluster, cluster_templates, "editable", query=TEMPLATE_QUERY,
                          args=[{"name": "variant"}, {"name": "scale", "value": "1"}], max=0.01)
    make_configmap(cluster)
    operator("--prometheus-address", proxy.url)
    make_rollout(cluster, "edited", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}],
                 analysis=templated_analysis("editable", {"variant": "on"}))
    first = wait_until(lambda: (m := metric_status(cluster, "edited")).get("result") == "Passed" and m, 60,
                       "a first evaluation")
    assert first["template"]["generation"] == 1
    started = status(cluster, "edited")["stageStartedAt"]

    body = cluster.custom.get_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", "editable")
    body["spec"]["query"] = TEMPLATE_QUERY + " + 0.001"
    cluster.custom.replace_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", "editable", body)

    after = wait_until(lambda: (m := metric_status(cluster, "edited")).get("template", {}).get("generation") == 2
                       and m, 30, "an evaluation of generation 2")
    assert after["value"] == pytest.approx(0.004) and after["result"] == "Passed"
    old = 'max(tmpl_value{flag="edited",variant="on"}) * 1'
    new = old + " + 0.001"
    queries = without_no_data_parts(proxy.received(), {old, new})
    assert set(queries) == {old, new}, queries
    # Generation 1's query was never sent once generation 2's had been.
    assert old not in queries[queries.index(new):]
    # Not a change of plan: same stage, same stage clock, no SpecChanged.
    current = status(cluster, "edited")
    assert current["stageStartedAt"] == started and current["stage"] == "1/2"
    assert "SpecChanged" not in [e.reason for e in events_of(cluster, "edited")]


def test_without_any_prometheus_address_the_rollout_says_so_and_holds(
    cluster: Cluster, operator: OperatorFactory,
) -> None:
    make_configmap(cluster)
    operator()  # no --prometheus-address
    make_rollout(cluster, "addressless", stages=TWO_STAGES,
                 analysis={"interval": "1s", "consecutiveErrorLimit": 100,
                           "metrics": [{"name": "errors", "query": "vector(0)", "max": 1}]})
    wait_until(lambda: (metric_status(cluster, "addressless").get("consecutiveErrors") or 0) >= 4, 60,
               "four errored evaluations")
    current = status(cluster, "addressless")
    assert current["currentWeight"] == 10 and current["stage"] == "1/2"
    condition = analysis_condition(cluster, "addressless")
    assert condition is not None and condition["reason"] == "Error"
    assert "no Prometheus to ask" in condition["message"] and "--prometheus-address" in condition["message"]
