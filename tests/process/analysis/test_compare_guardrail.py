"""Compare metrics with a real Prometheus scraping the demo service (real request counters by flag
variant), the real operator and the sandbox.

Two flags are rolled out side by side on the same traffic: `guarded` with a compare metric, and
`absolute` with an absolute budget on the treatment's error rate, so each test shows where the two
disagree, on the very same service.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, Process, featurerollout_command, wait_until
from tests.support.fixtures import require_prometheus
from tests.support.prometheus import PrometheusServer, free_port, start_prometheus
from tests.support.rollouts import document, make_configmap, make_rollout, wait_phase, wait_rolled_back
from tests.support.watching import values_seen

pytestmark = pytest.mark.integration

FLAGS = ("guarded", "absolute")
ERRORS = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s",code=~"5.."}[{{window}}]))'
TOTAL = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s"}[{{window}}]))'
TREATMENT_RATE = (
    'sum(rate(http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}[30s]))'
    ' / sum(rate(http_requests_total{flag="{{flag}}",variant="on"}[30s]))'
    # as a careful SRE writes it: no verdict on a handful of requests (no data: onNoData Hold)
    ' and on() sum(increase(http_requests_total{flag="{{flag}}",variant="on"}[30s])) > 200'
)
STAGES = [{"weight": 25, "duration": "30s"}, {"weight": 50, "duration": "30s"}, {"weight": 100, "duration": "2s"}]


@contextmanager
def demo_service(cluster: Cluster, tmp_path: Path, *, on: float, off: float) -> Iterator[PrometheusServer]:
    """The demo service (both flags, 100 req/s, the weights read from the ConfigMap), scraped by a
    real Prometheus every second."""
    require_prometheus()
    make_configmap(cluster)
    port = free_port()
    flags = [arg for flag in FLAGS for arg in ("--flag", flag)]
    service = Process(
        [sys.executable, "-m", "featurerollout_demo.service", "--port", str(port), *flags,
         "--on-error-rate", str(on), "--off-error-rate", str(off), "--rps", "100", "--seed", "14",
         "--kubeconfig", str(cluster.kubeconfig), "--namespace", "default", "--configmap", "feature-flags"],
        tmp_path / "service.log",
    ).start()
    with ExitStack() as stack:
        stack.callback(service.stop)
        yield stack.enter_context(start_prometheus(tmp_path / "prometheus", [f"127.0.0.1:{port}"]))


def analysis(prometheus: PrometheusServer, metric: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "2s", "prometheus": {"address": prometheus.url, "timeout": "2s"}, "metrics": [metric]}


def compare_metric(**budget: float) -> dict[str, Any]:
    return {
        "name": "errors-vs-control",
        "compare": {
            "treatment": {"errors": ERRORS % "on", "total": TOTAL % "on"},
            "control": {"errors": ERRORS % "off", "total": TOTAL % "off"},
            "confidence": 0.99,
            "minSamplePerArm": 200,
            **budget,
        },
    }


def absolute_metric(max_: float) -> dict[str, Any]:
    return {"name": "error-rate", "query": TREATMENT_RATE, "max": max_, "failureLimit": 1}


@contextmanager
def statuses_recorded(cluster: Cluster, name: str) -> Iterator[list[dict[str, Any]]]:
    """Every status of rollout `name` the API server stored, in order (a watch from before it exists)."""
    args = ("featurerollout.io", "v1alpha1", "default", "featurerollouts")
    start = cluster.custom.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
    with values_seen(cluster.custom.list_namespaced_custom_object, *args, name=name, start=start,
                     value=lambda obj: obj.get("status") or {}) as seen:
        yield seen


def promotions(statuses: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(the status before, the status written with it) for each step to a later stage or to Succeeded."""
    return [(before, after) for before, after in itertools.pairwise(statuses)
            if after.get("currentStage", 0) > before.get("currentStage", 0)
            or (after.get("phase") == "Succeeded" and before.get("phase") != "Succeeded")]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_view(cluster: Cluster, name: str) -> str:
    result = subprocess.run(
        featurerollout_command("status", name, "--kubeconfig", str(cluster.kubeconfig), "-n", "default"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_twice_the_control_rate_over_a_high_baseline_rolls_back_where_an_absolute_budget_would_not(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    """Control fails 10% of requests (a bad baseline), the treatment 20%. An absolute budget of 30%,
    set well above the baseline so that the bad baseline does not roll everything back, lets it
    through; the comparison catches it."""
    with demo_service(cluster, tmp_path, on=0.20, off=0.10) as prometheus:
        operator()
        make_rollout(cluster, "guarded", stages=STAGES, analysis=analysis(prometheus, compare_metric(maxIncrease=0)))
        make_rollout(cluster, "absolute", stages=STAGES, analysis=analysis(prometheus, absolute_metric(0.30)))
        final = wait_rolled_back(cluster, "guarded", timeout=120)
        assert read_flag_weight(document(cluster), "guarded") == 0
        degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "BudgetExceeded"
        assert "errors-vs-control failed its comparison: treatment " in degraded["message"]
        assert "worse than the budget allows, 99% confidence" in degraded["message"]
        (metric,) = final["metrics"]
        assert metric["result"] == "Failed" and metric["value"] > 0
        assert metric["treatment"]["total"] >= 200 and metric["control"]["total"] >= 200
        treatment_rate = metric["treatment"]["errors"] / metric["treatment"]["total"]
        control_rate = metric["control"]["errors"] / metric["control"]["total"]
        assert 0.12 < treatment_rate < 0.3 and 0.05 < control_rate < 0.15, (treatment_rate, control_rate)
        view = status_view(cluster, "guarded")
        assert "errors-vs-control: treatment " in view and " vs control " in view and "99% confidence" in view
        # The absolute budget, on the same traffic, never saw a breach: the flag goes all the way.
        absolute = wait_phase(cluster, "absolute", "Succeeded", timeout=120)
        assert absolute["currentWeight"] == 100


def test_equal_rates_over_a_high_baseline_complete_where_an_absolute_budget_under_it_rolls_back(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path
) -> None:
    """Both variants fail 10% of requests: the flag does no harm. An absolute budget just under the
    baseline (9%) rolls it back; the comparison lets it complete."""
    with demo_service(cluster, tmp_path, on=0.10, off=0.10) as prometheus:
        operator()
        with statuses_recorded(cluster, "guarded") as recorded:
            make_rollout(cluster, "guarded", stages=STAGES,
                         analysis=analysis(prometheus, compare_metric(maxIncrease=0)))
            make_rollout(cluster, "absolute", stages=STAGES, analysis=analysis(prometheus, absolute_metric(0.09)))
            absolute = wait_rolled_back(cluster, "absolute", timeout=120)
            assert next(c for c in absolute["conditions"] if c["type"] == "Degraded")["reason"] == "BudgetExceeded"
            final = wait_phase(cluster, "guarded", "Succeeded", timeout=180)
            wait_until(lambda: recorded and recorded[-1].get("phase") == "Succeeded", 10, "the watch to see it")
        assert final["currentWeight"] == 100 and read_flag_weight(document(cluster), "guarded") == 100
        (metric,) = final["metrics"]
        assert metric["result"] == "Passed"
        # Every stage below 100% promoted on a comparison with enough sample, never on NoData: by
        # the record, each status that moved the rollout on from such a stage carries the
        # evaluation it moved on, and that one passed, over at least minSamplePerArm requests per
        # arm, measured in the stage it left. (At 100% there is no control left to compare with:
        # the metric passes by design, and the last stage ends on its duration.)
        steps = [(before, after) for before, after in promotions(recorded) if before.get("currentWeight", 0) < 100]
        assert [(before.get("currentWeight"), after.get("currentStage")) for before, after in steps] == \
            [(25, 1), (50, 2)], steps
        for before, after in steps:
            (decided,) = after["metrics"]
            assert decided["result"] == "Passed", (before, after)
            assert decided["treatment"]["total"] >= 200 and decided["control"]["total"] >= 200, decided
            assert _time(decided["evaluatedAt"]) > _time(before["stageStartedAt"]), (before, after)
        # ... and while the stage's sample was still short, the comparison said NoData and held.
        assert any((m := (s.get("metrics") or [{}])[0]).get("result") == "NoData" and m.get("treatment")
                   for s in recorded), recorded
