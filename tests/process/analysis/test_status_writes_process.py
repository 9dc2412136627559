"""--analysis-status-every: the real operator, the real Prometheus, the API server. An evaluation that
changes no verdict is not written until the stored one is old enough; a failing evaluation is
written at once, and the status stays one consistent evaluation that `featurerollout status` dates."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from featurerollout.core.statuswrites import write_spread
from tests.process.analysis.test_analysis import Exporter, analysis, exporter, prometheus  # noqa: F401
from tests.process.rollouts.test_status_truth import cli
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.prometheus import PrometheusServer, free_port, wait_for_query
from tests.support.rollouts import make_configmap, make_rollout, status, wait_rolled_back

pytestmark = pytest.mark.integration

STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 100}]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_writes(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [r for r in cluster.log.requests(resource="featurerollouts", name=name, subresource="status")
            if r["verb"] in ("patch", "update") and r["status"] < 300]


def lag_histogram(port: int) -> dict[str, float]:
    """featurerollout_analysis_lag_seconds from the operator's /metrics: each bucket's count by
    its bound (`le`), and `count`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "featurerollout_analysis_lag_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_count"):
                found["count"] = sample.value
    return found


def test_unchanged_verdicts_wait_and_a_failure_is_written_at_once(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
) -> None:
    make_configmap(cluster)
    exporter.set("quiet", 0.01)
    wait_for_query(prometheus.url, 'max(demo_error_ratio{flag="quiet"})', lambda r: r.value == 0.01, timeout=30)
    metrics_port = free_port()
    operator("--analysis-status-every", "30", "--metrics-port", str(metrics_port))
    make_rollout(cluster, "quiet", stages=STAGES, analysis=analysis(prometheus, failure_limit=0))
    first = wait_until(lambda: (s := status(cluster, "quiet")).get("metrics") and s, 30, "a first evaluation")
    assert first["metrics"][0]["result"] == "Passed" and first["metrics"][0]["value"] == 0.01
    # The value changes but the verdict does not: evaluated every second, written not before 30 s.
    exporter.set("quiet", 0.02)
    writes_before = len(status_writes(cluster, "quiet"))
    time.sleep(6)  # a window to count writes in: nothing to wait for, by design
    now = status(cluster, "quiet")
    assert len(status_writes(cluster, "quiet")) == writes_before, "an unchanged verdict was written"
    # The analysis lag counts from the evaluation this process last made, not from the stored
    # (deliberately older) lastAnalysisAt: at a 1 s interval the looks come about on time, where
    # counting from the stored one makes each look a second later than the one before (1, 2, 3...
    # s). One look over 2 s is allowed for this loaded machine.
    lag = lag_histogram(metrics_port)
    assert lag["count"] >= 4 and lag["count"] - lag["2.0"] <= 1, lag
    # What is stored is one evaluation, dated: its value and its lastAnalysisAt belong together.
    assert now["metrics"][0]["value"] == 0.01
    assert now["metrics"][0]["evaluatedAt"] == now["lastAnalysisAt"] == first["lastAnalysisAt"]
    shown = cli(cluster, "status", "quiet")
    assert shown.returncode == 0, shown.stderr
    age = re.search(r"Metrics \(every 1s, onNoData Hold, as of (\d+)s ago\)", shown.stdout)
    assert age is not None and int(age.group(1)) >= 5, shown.stdout
    # The deferred write comes once the stored evaluation is this rollout's share of 30 s old
    # (statuswrites.write_spread: about 20 s for "quiet"), not at 30 s for every rollout alike.
    share = 30 * write_spread("default", "quiet")
    assert share < 25, share  # the name was chosen so that the two are told apart
    fresher = wait_until(lambda: (s := status(cluster, "quiet"))["metrics"][0]["value"] == 0.02 and s, 40,
                         "the deferred write")
    waited = (moment(fresher["lastAnalysisAt"]) - moment(first["lastAnalysisAt"])).total_seconds()
    assert share <= waited < 28, (share, waited)
    # A breach changes the verdict: written (and acted on) at once, not 30 s later.
    exporter.set("quiet", 0.5)
    started = time.monotonic()
    final = wait_rolled_back(cluster, "quiet", timeout=20)
    assert time.monotonic() - started < 20
    failed = next(m for m in final["metrics"] if m["name"] == "error-rate")
    assert failed["result"] == "Failed" and failed["value"] == 0.5 and final["currentWeight"] == 0
