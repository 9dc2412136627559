"""Every shipped query holds on an app that creates its series lazily, as client libraries do.

The app is the demo service (a subprocess) with the official flagd evaluator assigning users to
variants from the ConfigMap the operator writes; it creates a series at its first increment, so a
variant that never failed has no `code="500"` series. The real operator (`featurerollout run`), the
real API server (the `cluster` fixture: the real kube-apiserver by default) and a real Prometheus.

The queries are read from where users copy them: every FeatureRollout `query:` and every
(Cluster)MetricTemplate in README.md, DEVELOPMENT.md, docs/**/*.md and examples/ (the chart's templates are a copy of
examples/metric-templates, checked elsewhere). For each: a healthy flag (never one error) reaches
100%, with the default `onNoData: Hold`; a broken one (half the "on" requests fail, or "on" answers
in ~300 ms for a latency query) is rolled back.

Label selections are mapped onto the app's labels: a literal flag (`flag="new-checkout"`) becomes
the case's flag, and the traffic example's `namespace="shop",service="checkout-new"` (the feature
backend's own requests) becomes `flag=...,variant="on"` (the requests the feature serves); the
query's structure, windows and `or vector(0)` are kept as written.

At a 1 s scrape every query is proved; at a 15 s scrape with a 15 s analysis interval, the queries
written for a real Prometheus (all but the demo's, whose 10 s windows are documented for its 1 s
scrape): there a rate window of `{{interval}}` would hold one sample and rate() returns nothing.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cluster import Cluster, OperatorFactory, Process, wait_until
from tests.support.fixtures import require_prometheus
from tests.support.paths import REPO
from tests.support.prometheus import free_port, start_prometheus
from tests.support.rollouts import make_configmap, make_rollout, status

from featurerollout import GROUP, VERSION

pytestmark = pytest.mark.integration

DOCS = [REPO / "README.md", REPO / "DEVELOPMENT.md", *sorted((REPO / "docs").rglob("*.md"))]
YAML_FILES = sorted((REPO / "examples").rglob("*.yaml"))
# Queries documented for the demo's 1 s scrape only (their comments say so): not proved at 15 s.
ONE_SECOND_ONLY = ("examples/demo/",)
WATCHED = ("http_requests_total", "http_request_duration_seconds")


@dataclass(frozen=True)
class Documented:
    where: str  # file, and which object in it
    query: str  # an inline query, or a template's query
    template: dict[str, Any] | None = None  # the template's spec when the query is a template's


def _fenced(text: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        yield match.group(1), match.group(2)


def _from_objects(where: str, objects: list[Any]) -> Iterator[Documented]:
    for index, body in enumerate(objects):
        if not isinstance(body, dict):
            continue
        spec = body.get("spec") or {}
        kind = body.get("kind")
        if kind in ("MetricTemplate", "ClusterMetricTemplate") and "query" in spec:
            yield Documented(f"{where} #{index} {kind}", spec["query"], spec)
        if kind == "FeatureRollout":
            for metric in (spec.get("analysis") or {}).get("metrics") or []:
                if "query" in metric:
                    yield Documented(f"{where} #{index} metric {metric['name']}", metric["query"])


def documented_queries() -> list[Documented]:
    """Every query on the app's metrics that the README, docs and examples give to copy."""
    found: list[Documented] = []
    for path in YAML_FILES:
        found += _from_objects(str(path.relative_to(REPO)), list(yaml.safe_load_all(path.read_text())))
    for path in DOCS:
        for number, (language, block) in enumerate(_fenced(path.read_text())):
            where = f"{path.relative_to(REPO)} block {number}"
            if language == "promql":
                found.append(Documented(where, block))
            elif language == "yaml" and any(name in block for name in WATCHED):
                found += _from_objects(where, list(yaml.safe_load_all(block)))
    return [d for d in found if any(name in d.query for name in WATCHED)]


def on_the_app(query: str) -> str:
    """The query with its label selection mapped onto the app's labels (see the module docstring)."""
    query = query.replace('namespace="shop",service="checkout-new"', 'flag="{{flag}}",variant="on"')
    return re.sub(r'flag="(?!\{\{)[^"]*"', 'flag="{{flag}}"', query)


def test_every_documented_query_is_found() -> None:
    """The collector misses none: every file that shows a query on the app's metrics gave one."""
    documented = documented_queries()
    sources = {d.where.split(" ")[0] for d in documented}
    for path in [*DOCS, *YAML_FILES]:
        text = path.read_text()
        # compare: metrics (counts, not a ratio) are proved by their own tests
        shown = [line for line in text.splitlines() if "rate(http_request" in line and "increase(" not in line]
        if shown and path.name != "benchmarks.md":  # benchmarks.md only names its benchmark's query
            assert str(path.relative_to(REPO)) in sources, f"{path}: a query the collector did not read"
    assert len({d.query for d in documented}) >= 6, documented
    for d in documented:
        assert "{{flag}}" in on_the_app(d.query), d


@dataclass(frozen=True)
class Case:
    flag: str
    healthy: bool
    documented: Documented
    template_name: str | None


def cases_for(documented: list[Documented], prefix: str) -> list[Case]:
    cases: list[Case] = []
    distinct: dict[str, Documented] = {}
    for d in documented:
        distinct.setdefault(on_the_app(d.query) + str(d.template is not None), d)
    for index, d in enumerate(distinct.values()):
        for healthy in (True, False):
            flag = f"{prefix}{index}-{'ok' if healthy else 'bad'}"
            cases.append(Case(flag, healthy, d, f"{prefix}{index}-tmpl" if d.template is not None else None))
    return cases


def latency_query(d: Documented) -> bool:
    return "http_request_duration_seconds" in d.query


@contextlib.contextmanager
def lazy_app(cluster: Cluster, cases: list[Case], workdir: Path) -> Iterator[str]:
    """The demo service as a subprocess, reading the flags from the ConfigMap; yields host:port."""
    port = free_port()
    args = [sys.executable, "-m", "featurerollout_demo.service", "--port", str(port), "--rps", "150",
            "--seed", "18", "--kubeconfig", str(cluster.kubeconfig), "--namespace", "default",
            "--configmap", "feature-flags"]
    for case in cases:
        args += ["--flag", case.flag]
        if not case.healthy:
            args += (["--flag-latency", f"{case.flag}:on=0.3"] if latency_query(case.documented)
                     else ["--flag-error-rate", f"{case.flag}:on=0.5"])
    process = Process(args, workdir / "app.log").start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


def start_rollouts(cluster: Cluster, cases: list[Case], interval: str, stage: str, made: list[str]) -> None:
    for case in cases:
        metric: dict[str, Any] = {"name": "documented"}
        if case.template_name is not None and case.template_name not in made:
            assert case.documented.template is not None
            spec = dict(case.documented.template) | {"query": on_the_app(case.documented.query)}
            cluster.custom.create_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterMetricTemplate",
                "metadata": {"name": case.template_name}, "spec": spec,
            })
            made.append(case.template_name)
        if case.template_name is not None:
            # The template's own defaults (budget, args, rateWindow) as shipped.
            metric["templateRef"] = {"name": case.template_name, "kind": "ClusterMetricTemplate"}
        else:
            metric |= {"query": on_the_app(case.documented.query),
                       "max": 0.1 if latency_query(case.documented) else 0.05, "failureLimit": 1}
        make_rollout(cluster, case.flag, stages=[{"weight": 50, "duration": stage}, {"weight": 100}],
                     analysis={"interval": interval, "metrics": [metric]},  # onNoData: Hold, the default
                     rollback={"automatic": True})


def prove(cluster: Cluster, operator: OperatorFactory, tmp_path: Path, cases: list[Case], *, scrape: str,
          interval: str, stage: str, timeout: float) -> None:
    require_prometheus()
    made: list[str] = []
    make_configmap(cluster)
    try:
        with lazy_app(cluster, cases, tmp_path) as target, \
                start_prometheus(tmp_path / "prometheus", [target], scrape_interval=scrape) as prometheus:
            operator("--prometheus-address", prometheus.url)
            start_rollouts(cluster, cases, interval, stage, made)

            def settled() -> bool:
                return all(status(cluster, c.flag).get("phase") in ("Succeeded", "RolledBack") for c in cases)

            with contextlib.suppress(AssertionError):
                wait_until(settled, timeout, "every rollout to succeed or roll back")
            wrong = []
            for case in cases:
                current = status(cluster, case.flag)
                expected = "Succeeded" if case.healthy else "RolledBack"
                if current.get("phase") != expected:
                    detail = [(m.get("result"), m.get("message")) for m in current.get("metrics") or []]
                    conditions = [c.get("message") for c in current.get("conditions") or []
                                  if c.get("type") == "Analysis"]
                    wrong.append(f"{case.documented.where} ({case.flag}): expected {expected}, got "
                                 f"{current.get('phase')} at {current.get('currentWeight')}%: {detail} {conditions}")
            assert not wrong, "\n".join(wrong)
    finally:
        for name in made:
            with contextlib.suppress(Exception):
                cluster.custom.delete_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", name)


def test_every_shipped_query_at_a_one_second_scrape(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    cases = cases_for(documented_queries(), "one")
    prove(cluster, operator, tmp_path, cases, scrape="1s", interval="2s", stage="4s", timeout=120)


def test_the_queries_for_a_real_prometheus_at_a_fifteen_second_scrape(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    real = [d for d in documented_queries() if not d.where.startswith(ONE_SECOND_ONLY)]
    cases = cases_for(real, "fifteen")
    prove(cluster, operator, tmp_path, cases, scrape="15s", interval="15s", stage="15s", timeout=240)
