"""spec.gates' rules, enforced by both the models and the CRD (and the real kube-apiserver, where it
runs): exactly one of webhook/approval, stage iff before: Stage and within the stages, unique names,
bounded timeouts. Issue 12, Gates: no field the API accepts that the operator then refuses."""

from __future__ import annotations

from typing import Any

import pytest

from featurerollout import api
from tests.api import crd_helpers
from tests.api.crd_helpers import apply_defaults, crd_errors, pydantic_problems, real_server_refusal, spec_schema


def spec_with(*gates: dict[str, Any], stages: int = 4) -> dict[str, Any]:
    weights = [10, 25, 50, 100][-stages:] if stages <= 4 else [*range(1, stages), 100]
    return {
        "flag": "new-checkout",
        "target": {"configMap": {"name": "feature-flags"}},
        "stages": [{"weight": w, "duration": "1m"} for w in weights],
        "gates": list(gates),
    }


APPROVAL = {"approval": {}}
WEBHOOK = {"webhook": {"url": "http://checks.example/smoke"}}


def assert_refused(spec: dict[str, Any], path: str, message: str) -> None:
    """Both the models and the CRD refuse, each naming `path` with `message`; the real server too."""
    problems = pydantic_problems(spec)
    assert any(p.startswith(f"{path}: ") and message in p for p in problems), problems
    errors = crd_errors(spec)
    assert any(e.startswith(path) and message in e for e in errors), errors
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None, f"the real kube-apiserver accepted a spec the models refuse: {problems}"
        assert f"{path}: " in refusal, f"the real server's message does not name {path}: {refusal}"


def assert_accepted(spec: dict[str, Any]) -> None:
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []
    assert real_server_refusal(spec) is None


@pytest.mark.parametrize(
    "gate",
    [
        {"name": "smoke", "before": "Start", **WEBHOOK},
        {"name": "ok-50", "before": "Stage", "stage": 3, **APPROVAL},
        {"name": "each", "before": "EveryStage", **APPROVAL, "timeout": "1h", "onTimeout": "Rollback"},
        {"name": "last", "before": "Success", "webhook": {"url": "https://checks.example/done", "timeout": "60s",
                                                          "secretRef": {"name": "checks", "key": "token"}}},
        {"name": "ok-100", "before": "Stage", "stage": 4, **APPROVAL},
    ],
)
def test_well_formed_gates_are_accepted(gate: dict[str, Any]) -> None:
    assert_accepted(spec_with(gate))


def test_both_webhook_and_approval_are_refused() -> None:
    spec = spec_with({"name": "g", "before": "Start", **WEBHOOK, **APPROVAL})
    assert_refused(spec, "spec.gates[0]", api.GATE_KIND_MESSAGE)


def test_neither_webhook_nor_approval_is_refused() -> None:
    assert_refused(spec_with({"name": "g", "before": "Start"}), "spec.gates[0]", api.GATE_KIND_MESSAGE)


def test_before_stage_needs_a_stage() -> None:
    spec = spec_with({"name": "g", "before": "Stage", **APPROVAL})
    problems = pydantic_problems(spec)
    assert any(p.startswith("spec.gates[0]: ") and api.GATE_STAGE_MESSAGE in p for p in problems), problems
    assert any(e.startswith("spec.gates[0].stage: ") and api.GATE_STAGE_MESSAGE in e
               for e in crd_errors(spec)), crd_errors(spec)
    refusal = real_server_refusal(spec)
    if crd_helpers.REAL_SERVER is not None:
        assert refusal is not None and "spec.gates[0].stage: " in refusal, refusal


@pytest.mark.parametrize("before", ["Start", "EveryStage", "Success"])
def test_a_stage_only_goes_with_before_stage(before: str) -> None:
    spec = spec_with({"name": "g", "before": before, "stage": 2, **APPROVAL})
    problems = pydantic_problems(spec)
    assert any(p.startswith("spec.gates[0]: ") and api.GATE_STAGE_MESSAGE in p for p in problems), problems
    assert any(e.startswith("spec.gates[0].stage: ") for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates[0].stage: " in refusal, refusal


def test_a_stage_beyond_the_stages_is_refused() -> None:
    spec = spec_with({"name": "g", "before": "Stage", "stage": 5, **APPROVAL})
    problems = pydantic_problems(spec)
    assert any(p.startswith("spec.gates[0].stage: ") and api.GATE_STAGE_RANGE_MESSAGE in p for p in problems), problems
    # A rule on the spec (it needs spec.stages) can name spec.gates, not the one gate.
    assert any(e.startswith("spec.gates: ") and api.GATE_STAGE_RANGE_MESSAGE in e
               for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates: " in refusal, refusal
    # counted after defaulting: the default ramp has 4 stages
    defaulted = spec_with({"name": "g", "before": "Stage", "stage": 4, **APPROVAL})
    del defaulted["stages"]
    assert pydantic_problems(defaulted) == []
    assert real_server_refusal(defaulted) is None
    assert crd_errors(apply_defaults(defaulted, spec_schema())) == []


def test_a_stage_beyond_the_defaulted_ramp_is_refused_on_the_crd() -> None:
    spec = spec_with({"name": "g", "before": "Stage", "stage": 5, **APPROVAL})
    del spec["stages"]
    errors = crd_errors(apply_defaults(spec, spec_schema()))
    assert any(e.startswith("spec.gates") and api.GATE_STAGE_RANGE_MESSAGE in e for e in errors), errors
    assert any(p.startswith("spec.gates[0].stage: ") for p in pydantic_problems(spec)), pydantic_problems(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates" in refusal, refusal


def test_stage_one_is_the_start() -> None:
    spec = spec_with({"name": "g", "before": "Stage", "stage": 1, **APPROVAL})
    problems = pydantic_problems(spec)
    assert any(p.startswith("spec.gates[0].stage: ") for p in problems), problems
    assert any(e.startswith("spec.gates[0].stage: ") for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates[0].stage: " in refusal, refusal


def test_gate_names_must_be_unique() -> None:
    spec = spec_with({"name": "g", "before": "Start", **WEBHOOK}, {"name": "g", "before": "Success", **APPROVAL})
    assert_refused(spec, "spec.gates", api.GATES_UNIQUE_MESSAGE)


def test_unknown_before_is_refused() -> None:
    spec = spec_with({"name": "g", "before": "Tomorrow", **APPROVAL})
    assert any(p.startswith("spec.gates[0].before: ") for p in pydantic_problems(spec)), pydantic_problems(spec)
    assert any(e.startswith("spec.gates[0].before: ") for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates[0].before: " in refusal, refusal


@pytest.mark.parametrize("timeout", ["0", "0s", "soon"])
def test_gate_timeout_must_be_a_positive_duration(timeout: str) -> None:
    spec = spec_with({"name": "g", "before": "Start", **APPROVAL, "timeout": timeout})
    problems = pydantic_problems(spec)
    assert any(p.startswith("spec.gates[0].timeout: ") for p in problems), problems
    assert any(e.startswith("spec.gates[0].timeout") for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.gates[0].timeout: " in refusal, refusal


@pytest.mark.parametrize("timeout", ["0s", "61s"])
def test_gate_webhook_timeout_is_bounded(timeout: str) -> None:
    spec = spec_with({"name": "g", "before": "Start", "webhook": {"url": "http://x.example", "timeout": timeout}})
    assert_refused(spec, "spec.gates[0].webhook.timeout", api.WEBHOOK_TIMEOUT_MESSAGE)


def test_gate_defaults_agree() -> None:
    spec = spec_with({"name": "g", "before": "Start", **WEBHOOK})
    defaulted = apply_defaults(spec, spec_schema())
    assert defaulted["gates"][0]["onTimeout"] == "Hold"
    assert defaulted["gates"][0]["webhook"]["timeout"] == "10s"
    assert [g.to_wire() for g in api.parse_spec(spec).gates or []] == defaulted["gates"]
