"""Every rule of shared/docs/api.md is enforced twice: by the pydantic models and by the CRD.

Each test breaks one rule and checks that (a) `api.parse_spec` refuses it with a message naming
the field path, as kube-apiserver would word it, and (b) the CRD refuses it: schema rules through
`jsonschema`, CEL rules through `celpy`, both against the rendered openAPIV3Schema.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurerollout import api
from tests.api import crd_helpers
from tests.api.crd_helpers import crd_errors, iter_rule_messages, pydantic_problems, real_server_refusal


def valid_spec() -> dict[str, Any]:
    """A spec that breaks no rule, with every rule-bearing part present."""
    return {
        "flag": "new-checkout",
        "target": {"configMap": {"name": "feature-flags"}},
        "stages": [
            {"weight": 10, "duration": "1h"},
            {"weight": 25, "duration": "1h"},
            {"weight": 50, "duration": "1h"},
            {"weight": 100},
        ],
        "analysis": {
            "interval": "1m",
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "metrics": [
                {"name": "error-rate", "query": "vector(0)", "max": 0.01},
                {"name": "success-rate", "query": "vector(1)", "min": 0.99},
            ],
        },
    }


def assert_refused(spec: dict[str, Any], pydantic_says: str, crd_says: str) -> None:
    """Both sides refuse, each with a line that starts with the expected `path: message` text;
    where the real kube-apiserver runs, it refuses too, and its message names the same field."""
    problems = pydantic_problems(spec)
    assert any(p.startswith(pydantic_says) for p in problems), problems
    errors = crd_errors(spec)
    assert any(e.startswith(crd_says) for e in errors), errors
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None, f"the real kube-apiserver accepted a spec the models refuse: {problems}"
        field = crd_says.split(":")[0]
        assert f"{field}: " in refusal, f"the real server's message does not name {field}: {refusal}"


def with_weights(*weights: float) -> dict[str, Any]:
    spec = valid_spec()
    spec["stages"] = [{"weight": w} for w in weights]
    return spec


def test_valid_spec_passes_both() -> None:
    assert pydantic_problems(valid_spec()) == []
    assert crd_errors(valid_spec()) == []
    assert real_server_refusal(valid_spec()) is None


def test_rule_messages_come_from_api_py() -> None:
    assert set(iter_rule_messages()) == {
        api.TARGET_RULE_MESSAGE,
        api.STAGES_INCREASING_MESSAGE,
        api.STAGES_LAST_MESSAGE,
        api.METRICS_UNIQUE_MESSAGE,
        api.METRIC_BOUND_MESSAGE,
        api.METRIC_MIN_MAX_MESSAGE,
        api.HTTPROUTE_BACKENDS_MESSAGE,
        api.WEBHOOK_TIMEOUT_MESSAGE,
        api.METRIC_KIND_MESSAGE,
        api.METRIC_COMPARE_BOUNDS_MESSAGE,
        api.COMPARE_BUDGET_MESSAGE,
        api.GATES_UNIQUE_MESSAGE,
        api.GATE_KIND_MESSAGE,
        api.GATE_STAGE_MESSAGE,
        api.GATE_TIMEOUT_MESSAGE,
        api.GATE_STAGE_RANGE_MESSAGE,
        api.RECEIVER_TOKEN_MESSAGE,
        api.METRIC_ARGS_MESSAGE,
        api.ARG_NAME_MESSAGE,
    }


# --- weights ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "index", "pydantic_says", "crd_says"),
    [
        ((0, 100), 0, "Input should be greater than 0", "0 is less than or equal to the minimum of 0"),
        ((-5, 100), 0, "Input should be greater than 0", "-5 is less than"),
        ((50, 100.5), 1, "Input should be less than or equal to 100", "100.5 is greater than the maximum"),
    ],
)
def test_weight_must_be_above_0_and_at_most_100(
    weights: tuple[float, ...], index: int, pydantic_says: str, crd_says: str
) -> None:
    path = f"spec.stages[{index}].weight: "
    assert_refused(with_weights(*weights), path + pydantic_says, path + crd_says)


def test_fractional_weights_are_allowed() -> None:
    spec = with_weights(0.5, 100)
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []


def test_weights_must_be_strictly_increasing() -> None:
    assert_refused(
        with_weights(10, 50, 40, 100),
        "spec.stages[2].weight: 40 is not greater than the previous stage's 50",
        f"spec.stages: {api.STAGES_INCREASING_MESSAGE}",
    )


def test_equal_weights_are_not_increasing() -> None:
    assert_refused(
        with_weights(10, 25, 25, 100),
        "spec.stages[2].weight: 25 is not greater than the previous stage's 25",
        f"spec.stages: {api.STAGES_INCREASING_MESSAGE}",
    )


def test_increasing_rule_covers_every_index_up_to_max_stages() -> None:
    """The CEL rule is unrolled over the indexes: the last pair of a full list is checked too."""
    weights = [float(i) for i in range(1, api.MAX_STAGES)] + [100.0]
    assert crd_errors(with_weights(*weights)) == []
    weights[-2] = 100.0  # stages[MAX-2] == stages[MAX-1]
    assert f"spec.stages: {api.STAGES_INCREASING_MESSAGE}" in crd_errors(with_weights(*weights))


def test_more_than_max_stages_are_refused() -> None:
    weights = [float(i) for i in range(1, api.MAX_STAGES + 1)] + [100.0]
    assert_refused(with_weights(*weights), "spec.stages: List should have at most", "spec.stages: ")


def test_last_stage_weight_must_be_100() -> None:
    assert_refused(
        with_weights(10, 50, 90),
        f"spec.stages[2].weight: 90: {api.STAGES_LAST_MESSAGE}",
        f"spec.stages: {api.STAGES_LAST_MESSAGE}",
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.5, 1, 5, 10, 25, 33.3, 50, 75, 99.9, 100]), min_size=1, max_size=api.MAX_STAGES
    )
)
def test_models_and_crd_agree_on_any_ramp(weights: list[float]) -> None:
    spec = with_weights(*weights)
    accepted = pydantic_problems(spec) == []
    assert accepted == (crd_errors(spec) == [])
    if crd_helpers.REAL_SERVER is not None:
        assert accepted == (real_server_refusal(spec) is None)


# --- durations -------------------------------------------------------------------------------

GO_DURATIONS = ["30s", "5m", "1h30m", "168h", "1.5h", "500ms", "0"]
NOT_DURATIONS = ["1y", "5", "abc", "1h 30m", "-5m", "1d", ""]


@pytest.mark.parametrize("duration", GO_DURATIONS)
def test_go_style_durations_are_accepted(duration: str) -> None:
    spec = valid_spec()
    spec["stages"][0]["duration"] = duration
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []


@pytest.mark.parametrize("duration", NOT_DURATIONS)
def test_durations_must_be_go_style(duration: str) -> None:
    spec = valid_spec()
    spec["stages"][1]["duration"] = duration
    assert_refused(
        spec,
        f"spec.stages[1].duration: {duration!r} is not a duration",
        f"spec.stages[1].duration: {duration!r} does not match",
    )


@pytest.mark.parametrize("field", ["interval", "prometheus.timeout"])
def test_analysis_durations_must_be_go_style(field: str) -> None:
    spec = valid_spec()
    node = spec["analysis"]
    *parents, last = field.split(".")
    for parent in parents:
        node = node[parent]
    node[last] = "1y"
    path = f"spec.analysis.{field}: "
    assert_refused(spec, path + "'1y' is not a duration", path + "'1y' does not match")


# --- metrics ---------------------------------------------------------------------------------


def test_metric_names_must_be_unique() -> None:
    spec = valid_spec()
    spec["analysis"]["metrics"][1]["name"] = "error-rate"
    assert_refused(
        spec,
        f"spec.analysis.metrics: {api.METRICS_UNIQUE_MESSAGE}: 'error-rate' appears more than once",
        f"spec.analysis.metrics: {api.METRICS_UNIQUE_MESSAGE}",
    )


def test_each_metric_needs_min_or_max() -> None:
    spec = valid_spec()
    del spec["analysis"]["metrics"][1]["min"]
    assert_refused(
        spec,
        f"spec.analysis.metrics[1]: {api.METRIC_BOUND_MESSAGE}",
        f"spec.analysis.metrics[1]: {api.METRIC_BOUND_MESSAGE}",
    )


@pytest.mark.parametrize("bounds", [{"min": 0.5}, {"max": 0.5}, {"min": 0.5, "max": 0.5}, {"min": 0, "max": 1}])
def test_a_metric_with_min_max_or_both_is_accepted(bounds: dict[str, float]) -> None:
    spec = valid_spec()
    spec["analysis"]["metrics"][1] = {"name": "m", "query": "vector(1)", **bounds}
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []


def test_metric_min_must_not_exceed_max() -> None:
    spec = valid_spec()
    spec["analysis"]["metrics"][0].update(min=2, max=1)
    assert_refused(
        spec,
        "spec.analysis.metrics[0]: min (2) must not be greater than max (1)",
        f"spec.analysis.metrics[0].min: {api.METRIC_MIN_MAX_MESSAGE}",
    )


# --- target ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        {},
        {"configMap": {"name": "a"}, "featureFlag": {"name": "b"}},
        {"configMap": {"name": "a"}, "webhook": {"url": "https://flags.example"}},
    ],
    ids=["none", "configMap+featureFlag", "configMap+webhook"],
)
def test_target_needs_exactly_one_member(target: dict[str, Any]) -> None:
    spec = valid_spec()
    spec["target"] = target
    assert_refused(
        spec, f"spec.target: {api.TARGET_RULE_MESSAGE}", f"spec.target: {api.TARGET_RULE_MESSAGE}"
    )


@pytest.mark.parametrize(
    "target",
    [
        {"configMap": {"name": "feature-flags", "key": "flags.json"}},
        {"featureFlag": {"name": "flags"}},
        {"httpRoute": {"name": "shop", "stableBackend": "checkout", "featureBackend": "checkout-new"}},
        {"webhook": {"url": "https://flags.example/api", "secretRef": {"name": "token", "key": "token"}}},
    ],
    ids=lambda t: next(iter(t)),
)
def test_each_target_member_alone_is_accepted(target: dict[str, Any]) -> None:
    spec = valid_spec()
    spec["target"] = copy.deepcopy(target)
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []
