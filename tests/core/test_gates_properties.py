"""Properties of gates over random histories (Hypothesis): time passing, healthy or breaching
analysis, webhook answers, and every manual request, on a rollout with gates at every kind of point.

After every look:
- Waiting if and only if a gate is recorded as held at (status.gate), and never on a finished rollout;
- the weight never goes down except to 0 (a rollback or an abort);
- no point is crossed while one of its gates is closed, unless a person promoted in that look;
- nothing is exposed before the Start gate opened (or a promote);
- a waiting rollout always has a next look unless only a person can open its gate (an approval);
- a look with nothing new changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurerollout.api import ControlAction, FeatureRolloutSpec, FeatureRolloutStatus, Phase
from featurerollout.core import gates
from featurerollout.core.engine import ControlRequest, SetWeight, analysis_due, decide
from tests.core.builders import T0, bad, ok

SPEC = FeatureRolloutSpec.model_validate({
    "flag": "f", "target": {"configMap": {"name": "flags"}},
    "stages": [{"weight": 10, "duration": "5s"}, {"weight": 25, "duration": "5s"}, {"weight": 50, "duration": "5s"},
               {"weight": 100, "duration": "5s"}],
    "analysis": {"interval": "2s", "prometheus": {"address": "http://p:9090"},
                 "metrics": [{"name": "error-rate", "query": "q", "max": 0.01, "failureLimit": 1}]},
    "gates": [
        {"name": "smoke", "before": "Start", "webhook": {"url": "http://c.example/smoke"}, "timeout": "20s"},
        {"name": "ok-50", "before": "Stage", "stage": 3, "approval": {}, "timeout": "30s", "onTimeout": "Rollback"},
        {"name": "each", "before": "EveryStage", "webhook": {"url": "http://c.example/each"}},
        {"name": "done", "before": "Success", "approval": {}},
    ],
})

STEP = st.one_of(
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 2, 5, 11, 40])),
    st.tuples(st.just("request"), st.sampled_from(list(ControlAction))),
    st.tuples(st.just("answers"), st.booleans()),
    st.tuples(st.just("metric"), st.booleans()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=60))
def test_gates_hold_what_they_guard_over_any_history(steps: list[tuple[str, Any]]) -> None:
    status = FeatureRolloutStatus()
    now = T0
    answer, healthy, requests = False, True, 0
    for kind, value in steps:
        request = None
        if kind == "wait":
            now += timedelta(seconds=value)
        elif kind == "request":
            requests += 1
            request = ControlRequest(id=f"r{requests}", action=value)
        elif kind == "answers":
            answer = value
        else:
            healthy = value
        checks = None
        due = gates.webhook_due(SPEC, status, now)
        if due is not None:
            checks = {due.name: gates.GateCheck(due.name, answer, "answered 200" if answer else "answered 500")}
        measurements = (ok() if healthy else bad()) if analysis_due(SPEC, status, now) else None
        before = status
        decision = decide(SPEC, status, generation=1, now=now, measurements=measurements, request=request,
                          gate_checks=checks)
        status = decision.status
        promoted = request is not None and request.action == ControlAction.PROMOTE

        # Waiting <=> a gate held at
        assert (status.phase == Phase.WAITING) == (status.gate is not None), (status.phase, status.gate)
        # the weight never goes down except to 0
        for action in decision.actions:
            if isinstance(action, SetWeight):
                assert action.weight == 0 or action.weight >= before.current_weight
        # no point crossed with a closed gate, unless promoted
        if not promoted and status.phase != Phase.ROLLED_BACK:
            crossed: list[str] = []
            if before.started_at is None and status.started_at is not None:
                crossed.append(gates.START)
            if status.started_at is not None and before.started_at is not None:
                crossed += [gates.stage_point(n + 1) for n in range(before.current_stage + 1, status.current_stage + 1)]
            if status.phase == Phase.SUCCEEDED and before.phase != Phase.SUCCEEDED:
                crossed += [gates.stage_point(n + 1) for n in range(status.current_stage + 1, len(SPEC.stages))]
                crossed.append(gates.SUCCESS)
            for point in crossed:
                for gate in gates.gates_at(SPEC, point):
                    assert gates.opening(status, gate, point) is not None, (point, gate.name, steps)
        # nothing exposed before the start gate opened (or a promote started it)
        if status.started_at is None and status.phase != Phase.ROLLED_BACK:
            assert status.current_weight == 0
        # a waiting rollout has a next look, unless only a person can open its gate
        if status.phase == Phase.WAITING and decision.next_check is None:
            assert status.gate is not None and status.gate.kind == "approval"
        # a look with nothing new changes nothing
        if status.phase == Phase.WAITING and gates.webhook_due(SPEC, status, now) is None \
                and not analysis_due(SPEC, status, now):
            again = decide(SPEC, status, generation=1, now=now)
            assert again.status == status and again.actions == (), steps
