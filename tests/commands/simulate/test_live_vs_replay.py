"""The live operator and `featurerollout simulate`'s replay decide the same, look by look, on one history.

A lazily instrumented app's counters, as Prometheus scraped them every 15 s or every 60 s (its
default), are backfilled with promtool into a real Prometheus, for a stretch around now that reaches
minutes into the future: Prometheus answers each instant with what was scraped by then, so the live
operator and the replay, later, see one and the same history. The treatment has no error series at
all until it breaks (client libraries create a labelled counter at its first increment).

The live operator (`featurerollout run` against the cluster: the real kube-apiserver by default) runs
the rollout: two promotions, then a rollback once the treatment breaks; every status it writes is
watched. The replay (`simulate.replay` measuring through `simulate.operator_measure`, the operator's
own measuring path) then looks at exactly the live run's instants and must agree at each look: each
metric's result, value, counts, message and consecutive failures, the stage, weight and phase after
the look, the moments of the promotions and of the rollback.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from featurerollout import api
from featurerollout.commands.simulate import Replay, operator_measure, replay
from tests.support.cluster import Cluster, OperatorFactory
from tests.support.fixtures import require_prometheus
from tests.support.history import find_promtool, history_prometheus
from tests.support.missing import skip_or_fail
from tests.support.rollouts import GROUP, PLURAL, VERSION, make_configmap, make_rollout, wait_rolled_back

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def prometheus_and_promtool() -> None:
    """Before the module's servers: skip without them, fail under CI."""
    if find_promtool() is None:
        skip_or_fail("needs promtool (the Debian package prometheus: make prometheus)")

NAME = "replayed"
INTERVAL = "2s"


def queries(scrape: timedelta) -> list[dict[str, Any]]:
    """The rollout's metrics, written for a lazily instrumented app (an absent error series is 0 errors);
    the rate window is 4 scrape intervals, so that it always holds samples to take a rate from."""
    window = f"{round(4 * scrape.total_seconds())}s"
    errors = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s",code="500"}[{{window}}])) or vector(0)'
    total = 'sum(increase(http_requests_total{flag="{{flag}}",variant="%s"}[{{window}}]))'
    return [
        {"name": "error-rate", "max": 0.05, "failureLimit": 1,
         "query": f'(sum(rate(http_requests_total{{flag="{{{{flag}}}}",variant="on",code="500"}}[{window}])) '
                  f'or vector(0)) / sum(rate(http_requests_total{{flag="{{{{flag}}}}",variant="on"}}[{window}]))'},
        {"name": "vs-control", "compare": {
            "treatment": {"errors": errors % "on", "total": total % "on"},
            "control": {"errors": errors % "off", "total": total % "off"},
            "maxIncrease": 0.01, "minSamplePerArm": 50, "confidence": 0.99}},
    ]


class StatusWatch:
    """Every status the API server stored for one FeatureRollout, in order (a watch, resumed from the
    last resourceVersion seen, so that no write is missed)."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.statuses: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="status-watch")
        self.thread.start()

    def _run(self) -> None:
        version: str | None = None
        while not self.stopped.is_set():
            stream = watch.Watch().stream(
                self.cluster.custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                field_selector=f"metadata.name={self.name}", timeout_seconds=1,
                **({"resource_version": version} if version else {}),
            )
            for event in stream:
                body = event["object"]
                version = body["metadata"]["resourceVersion"]
                self.statuses.append(body.get("status") or {})

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def live_looks(statuses: list[dict[str, Any]]) -> tuple[dict[datetime, dict[str, Any]], dict[int, datetime]]:
    """From the statuses the live run wrote: each look that measured (its instant, lastAnalysisAt) with
    the status it wrote, and when each stage's weight was held (stageStartedAt)."""
    looks: dict[datetime, dict[str, Any]] = {}
    held: dict[int, datetime] = {}
    for status in statuses:
        if status.get("lastAnalysisAt"):
            at = instant(status["lastAnalysisAt"])
            # A look's last write at its own stage: a rollback is written twice (its intent before the
            # 0%, then the record after it); a later look that only promoted keeps lastAnalysisAt.
            if at not in looks or looks[at]["currentStage"] == status["currentStage"]:
                looks[at] = status
        if status.get("stageStartedAt") and status.get("phase") == "Progressing":
            started = instant(status["stageStartedAt"])
            assert held.setdefault(status["currentStage"], started) == started
    return looks, held


def wire(metric: api.MetricStatus) -> dict[str, Any]:
    return metric.to_wire()


def assert_same_look(at: datetime, live: dict[str, Any], replayed: Replay) -> None:
    evaluation = next((e for e in replayed.evaluations if e.at == at), None)
    assert evaluation is not None and evaluation.after is not None, f"the replay did not measure at {at}"
    mine = {m.name: wire(m) for m in evaluation.metrics}
    theirs = {m["name"]: m for m in live.get("metrics", []) if instant(m["evaluatedAt"]) == at}
    assert sorted(mine) == sorted(theirs), at
    for name, metric in theirs.items():
        got = mine[name]
        for field in ("result", "consecutiveFailures", "consecutiveErrors", "message"):
            assert got.get(field) == metric.get(field), (at, name, field, got, metric)
        assert (got.get("value") is None) == (metric.get("value") is None), (at, name, got, metric)
        if metric.get("value") is not None:
            assert got["value"] == pytest.approx(metric["value"], rel=1e-9, abs=1e-12), (at, name)
        for arm in ("treatment", "control"):
            assert (got.get(arm) is None) == (metric.get(arm) is None), (at, name, arm)
            for part in ("errors", "total") if metric.get(arm) else ():
                assert got[arm][part] == pytest.approx(metric[arm][part], rel=1e-9, abs=1e-9), (at, name, arm)
    after = evaluation.after
    assert (after.phase.value, after.current_stage, after.current_weight) == (
        live["phase"], live["currentStage"], live["currentWeight"]), at


@pytest.mark.parametrize("scrape_seconds", [15, 60])
def test_the_replay_decides_as_the_live_operator_did_look_by_look(
    cluster: Cluster, operator: OperatorFactory, tmp_path: Path, scrape_seconds: int
) -> None:
    require_prometheus()
    scrape = timedelta(seconds=scrape_seconds)
    now = datetime.now(UTC)
    aligned = datetime.fromtimestamp(now.timestamp() // scrape_seconds * scrape_seconds, UTC)
    # The treatment breaks after the two 20 s stages (the rollout starts within ~20 s from now).
    bad_from = aligned + scrape * (-(-75 // scrape_seconds))
    history = {"flag": NAME, "start": aligned - timedelta(minutes=30), "end": bad_from + timedelta(minutes=6),
               "scrape": scrape, "treatment_share": 0.3, "rps": 40.0, "control_errors": 0.01,
               "bad_from": bad_from, "bad_rate": 0.3}
    with history_prometheus(tmp_path / "prometheus", **history) as prometheus:
        make_configmap(cluster)
        operator()
        spec = {"flag": NAME, "target": {"configMap": {"name": "feature-flags"}},
                "stages": [{"weight": 10, "duration": "20s"}, {"weight": 50, "duration": "20s"},
                           {"weight": 100, "duration": "15m"}],
                "analysis": {"interval": INTERVAL, "onNoData": "Ignore", "metrics": queries(scrape),
                             "prometheus": {"address": prometheus.url, "timeout": "5s"}}}
        watcher = StatusWatch(cluster, NAME)
        try:
            make_rollout(cluster, NAME, **{k: v for k, v in spec.items() if k != "flag"})
            deadline = (bad_from + 3 * scrape + timedelta(seconds=90) - datetime.now(UTC)).total_seconds()
            final = wait_rolled_back(cluster, NAME, timeout=deadline)
        finally:
            watcher.stop()
        looks, held = live_looks(watcher.statuses)
        # The scenario happened: two promotions, then the rollback, at 100%, on a look that measured.
        assert sorted(held) == [0, 1, 2], held
        assert final["currentStage"] == 2
        rolled_back = instant(final["finishedAt"])
        assert rolled_back in looks and rolled_back > bad_from

        parsed = api.parse_spec(spec, NAME)
        measure = operator_measure(parsed, address=prometheus.url, name=NAME, namespace="default", timeout="5s")
        result = asyncio.run(replay(parsed, measure, start=held[0], end=rolled_back + timedelta(minutes=1),
                                    looks=sorted(looks), held=held))

    assert len(looks) >= 20, len(looks)
    for at, status in sorted(looks.items()):
        assert_same_look(at, status, result)
    assert [e.at for e in result.evaluations] == sorted(looks)
    assert result.phase == api.Phase.ROLLED_BACK and result.rolled_back_at == rolled_back
    assert [(s.stage, s.start) for s in result.stages] == sorted(held.items())
    assert result.message == final["message"]
