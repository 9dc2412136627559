"""Issue 9: rollouts stopped by their analysis, then `resume`, `promote` and `retry`.

The real operator process, the API server, a real Prometheus scraping an exporter whose error ratio
the test sets per flag, and the real CLI. Each state is reached by three rollouts at once (one per
request). After each request: the outcome the README promises, the CLI's exit code, a status that
agrees with the weight the ConfigMap holds, and no halt left behind to pause the rollout again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.process.analysis.test_analysis import (  # noqa: F401 (exporter and prometheus are fixtures)
    Exporter,
    analysis,
    exporter,
    prometheus,
    wait_for_series,
)
from tests.process.rollouts.test_status_truth import assert_tells_the_truth, cli, cm_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.prometheus import PrometheusServer
from tests.support.rollouts import (
    GROUP,
    PLURAL,
    VERSION,
    make_configmap,
    make_rollout,
    status,
    wait_rolled_back,
)

pytestmark = pytest.mark.integration

BROKEN_QUERY = 'max(demo_error_ratio{flag="{{flag}}"}'  # a parse error: Prometheus answers 400
LONG_STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100}]
SHORT_STAGES = [{"weight": 10, "duration": "2s"}, {"weight": 100, "duration": "2s"}]


def rolled_back(cluster: Cluster, prom: PrometheusServer, gauges: Exporter, name: str) -> None:
    """Rolled back automatically on a breach at 10%; the metric then recovers."""
    gauges.set(name, 0.0)
    make_rollout(cluster, name, stages=LONG_STAGES, analysis=analysis(prom, failure_limit=0))
    wait_until(lambda: status(cluster, name).get("currentWeight") == 10, 30, f"{name} at 10%")
    gauges.set(name, 0.4)
    wait_rolled_back(cluster, name)
    recover(prom, gauges, name)


def recover(prom: PrometheusServer, gauges: Exporter, name: str) -> None:
    """The metric recovers, as Prometheus sees it (a scrape later)."""
    gauges.set(name, 0.0)
    wait_for_series(prom, f'max(demo_error_ratio{{flag="{name}"}})', lambda v: v < 0.05)


def halted_on_breach(cluster: Cluster, prom: PrometheusServer, gauges: Exporter, name: str) -> None:
    """A breach under `rollback.automatic: false`: Paused, holding 10%; the metric then recovers."""
    gauges.set(name, 0.0)
    make_rollout(cluster, name, stages=LONG_STAGES, analysis=analysis(prom, failure_limit=0),
                 rollback={"automatic": False})
    wait_until(lambda: status(cluster, name).get("currentWeight") == 10, 30, f"{name} at 10%")
    gauges.set(name, 0.4)
    wait_until(lambda: (status(cluster, name).get("halt") or {}).get("reason") == "BudgetExceeded", 30,
               f"{name} halted")
    recover(prom, gauges, name)


def halted_on_errors(cluster: Cluster, prom: PrometheusServer, gauges: Exporter, name: str) -> None:
    """Errors under `onError: Pause`: Paused, holding 10%; then the query is fixed (a spec change)."""
    gauges.set(name, 0.0)
    make_rollout(cluster, name, stages=SHORT_STAGES,
                 analysis=analysis(prom, query_text=BROKEN_QUERY, consecutiveErrorLimit=0, onError="Pause"))
    wait_until(lambda: (status(cluster, name).get("halt") or {}).get("reason") == "AnalysisError", 30,
               f"{name} halted")
    fixed = analysis(prom, consecutiveErrorLimit=0, onError="Pause")
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                                  {"spec": {"analysis": fixed}})
    wait_until(lambda: status(cluster, name).get("observedGeneration") == 2, 20, f"{name}'s fix seen")
    assert status(cluster, name)["phase"] == "Paused"  # a fix does not lift the halt: a person does


Setup = Callable[[Cluster, PrometheusServer, Exporter, str], None]
# state -> (setup, {action: (exit code, phase it settles in, weight)}). Exit codes: 0 done, 4 ignored.
TABLE: dict[str, tuple[Setup, dict[str, tuple[int, str, float]]]] = {
    "rolledback": (rolled_back, {
        "resume": (4, "RolledBack", 0), "promote": (4, "RolledBack", 0), "retry": (0, "Progressing", 10),
    }),
    "halted": (halted_on_breach, {
        "resume": (0, "Progressing", 10), "promote": (0, "Progressing", 50), "retry": (4, "Paused", 10),
    }),
    "errors": (halted_on_errors, {
        "resume": (0, "Succeeded", 100), "promote": (0, "Succeeded", 100), "retry": (4, "Paused", 10),
    }),
}


@pytest.mark.parametrize("state", sorted(TABLE))
def test_stopped_by_analysis_then_resume_promote_retry(
    cluster: Cluster, operator: OperatorFactory, exporter: Exporter, prometheus: PrometheusServer,  # noqa: F811
    state: str,
) -> None:
    setup, outcomes = TABLE[state]
    make_configmap(cluster)
    operator()
    names = {action: f"{state}-{action}" for action in outcomes}
    for name in names.values():
        setup(cluster, prometheus, exporter, name)
    for name in names.values():
        assert_tells_the_truth(cluster, name)
    for action, name in names.items():
        code, phase, weight = outcomes[action]
        result = cli(cluster, action, name)
        assert result.returncode == code, (action, result.stdout, result.stderr)

        def settled(name: str = name, phase: str = phase, weight: float = weight) -> dict[str, Any] | None:
            st = status(cluster, name)
            ok = st.get("phase") == phase and st.get("currentWeight") == weight == cm_weight(cluster, name)
            return st if ok else None

        wait_until(settled, 40, f"{name}: {phase} at {weight}% after {action}")
        time.sleep(2.5)  # several looks (1 s analysis): nothing left behind pauses it again
        again = assert_tells_the_truth(cluster, name)
        assert (again["phase"], again["currentWeight"]) == (phase, weight), (action, again)
        assert again["lastRequest"]["outcome"] == ("Done" if code == 0 else "Ignored")
