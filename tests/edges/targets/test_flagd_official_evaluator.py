"""The documents the operator writes, evaluated by the official flagd evaluator.

`openfeature-flagd-core` (the library behind the OpenFeature flagd provider's in-process mode)
decides which of 100,000 targeting keys get `on`, for both flag targets: the configMap target's
flagd document (featurerollout.edges.targets.flagd.set_flag, applied to a shared document's text, stage after
stage as the operator writes it) and the featureFlag target's `spec.flagSpec`
(featurerollout.edges.targets.flagd.set_flag_spec, applied to a FeatureFlag object the same way).

- at each weight of a ramp, fractional ones included, the share of `on` is W% +- 0.5%;
- a key that had `on` keeps it when W rises (monotone exposure);
- at 0 nobody has `on`, at 100 everybody has it;
- every other flag of the document evaluates exactly as before the write;
- the weight the operator reads back is the weight it wrote, exactly.

About a minute (1.2 million evaluations), so it is marked `slow` (not in `make unit`).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError

from featurerollout.edges.targets.flagd import flag_spec_flags, read_flag_weight, set_flag, set_flag_spec, weight_of

pytestmark = pytest.mark.slow

FLAG = "new-checkout"
RAMP = (0, 0.5, 10, 33.3, 50, 100)
KEYS = [f"user-{i}" for i in range(100_000)]
TOLERANCE = 0.005  # +- 0.5 percentage points

# Other people's flags, of every kind flagd knows: plain, fractional of their own, bucketed by an
# attribute, rule-based, DISABLED, and through a shared `$evaluators` entry. Ours starts DISABLED.
OTHER_FLAGS: dict[str, Any] = {
    "dark-mode": {"state": "ENABLED", "variants": {"a": 1.0, "b": 2.0}, "defaultVariant": "a"},
    "search-v2": {"state": "ENABLED", "variants": {"x": "x", "y": "y"}, "defaultVariant": "x",
                  "targeting": {"fractional": [["x", 1], ["y", 3]]}},
    "by-email": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "a",
                 "targeting": {"fractional": [{"var": "email"}, ["a", 10], ["b", 20], ["c", 70]]}},
    "staff-only": {"state": "ENABLED", "variants": {"yes": True, "no": False}, "defaultVariant": "no",
                   "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "yes", None]}},
    "retired": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
    "shared-rule": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                    "targeting": {"$ref": "half"}},
}
EVALUATORS = {"half": {"fractional": [["on", 50], ["off", 50]]}}
OURS_BEFORE = {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
CONFIGMAP_TEXT = json.dumps(
    {"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {**OTHER_FLAGS, FLAG: OURS_BEFORE},
     "$evaluators": EVALUATORS}, indent=2,
)
FEATURE_FLAG = {
    "apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag",
    "metadata": {"name": "feature-flags", "namespace": "shop", "resourceVersion": "7"},
    "spec": {"flagSpec": {"flags": {**OTHER_FLAGS, FLAG: OURS_BEFORE}, "$evaluators": EVALUATORS}},
}
OTHER_CONTEXTS = [
    EvaluationContext(targeting_key=f"user-{i}", attributes={"email": f"u{i}@{'example.com' if i % 7 else 'x.org'}"})
    for i in range(3000)
]


@dataclass(frozen=True)
class Written:
    """What the operator wrote at one weight: the document flagd loads, and the weight read back."""

    weight: float
    document: Mapping[str, Any]
    read_back: float | None


def configmap_writes() -> Iterator[Written]:
    """The configMap target's document text at each stage, as flagd would load it."""
    text = CONFIGMAP_TEXT
    for weight in RAMP:
        text = set_flag(text, FLAG, weight)
        yield Written(weight, json.loads(text), read_flag_weight(text, FLAG))


def feature_flag_writes() -> Iterator[Written]:
    """The featureFlag target's `spec.flagSpec` at each stage (what the OpenFeature operator turns
    into flagd configuration), after a JSON round trip, as the API server stores it."""
    body: dict[str, Any] = copy.deepcopy(FEATURE_FLAG)
    for weight in RAMP:
        body = set_flag_spec(body, FLAG, weight) or body
        stored = json.loads(json.dumps(body))
        yield Written(weight, stored["spec"]["flagSpec"], weight_of(flag_spec_flags(stored).get(FLAG)))


TARGETS: dict[str, Callable[[], Iterator[Written]]] = {
    "configMap": configmap_writes, "featureFlag": feature_flag_writes,
}
BEFORE: dict[str, Mapping[str, Any]] = {
    "configMap": json.loads(CONFIGMAP_TEXT), "featureFlag": FEATURE_FLAG["spec"]["flagSpec"],  # type: ignore[index]
}


def evaluator(document: Mapping[str, Any]) -> FlagdCore:
    core = FlagdCore()
    core.set_flags(copy.deepcopy(dict(document)))  # it rewrites the dict it is given
    return core


def exposure(document: Mapping[str, Any]) -> bytes:
    """For each key, 1 when flagd gives it `on` (the boolean value true), else 0."""
    core = evaluator(document)
    return bytes(
        core.resolve_boolean_value(FLAG, False, EvaluationContext(targeting_key=key)).value is True for key in KEYS
    )


def resolve_all(document: Mapping[str, Any], flag: str) -> list[tuple[Any, ...]]:
    """Every outcome of `flag` over OTHER_CONTEXTS: value, variant, reason (or the error)."""
    core = evaluator(document)
    values = list(OTHER_FLAGS[flag]["variants"].values())
    resolve = {bool: core.resolve_boolean_value, str: core.resolve_string_value,
               float: core.resolve_float_value}[type(values[0])]
    outcomes: list[tuple[Any, ...]] = []
    for context in OTHER_CONTEXTS:
        try:
            details = resolve(flag, values[0], context)  # type: ignore[operator]
            outcomes.append((details.value, details.variant, details.reason, details.error_code))
        except OpenFeatureError as error:
            outcomes.append((type(error).__name__, str(error)))
    return outcomes


@pytest.fixture(scope="module", params=sorted(TARGETS))
def ramp(request: pytest.FixtureRequest) -> tuple[str, list[Written], dict[float, bytes]]:
    """One target's writes along the ramp, and flagd's exposure of every key at each."""
    writes = list(TARGETS[request.param]())
    return request.param, writes, {w.weight: exposure(w.document) for w in writes}


def test_the_share_with_on_is_the_weight(ramp: tuple[str, list[Written], dict[float, bytes]]) -> None:
    target, _, exposed = ramp
    for weight, on in exposed.items():
        share, p = sum(on) / len(KEYS), weight / 100
        assert abs(share - p) <= TOLERANCE, f"{target} at {weight}%: flagd gives on to {share:.4%}"
        # Sharper than the bound above where it matters (0.5% +- 0.5% would let 0 pass): within
        # five standard deviations of a fair draw of 100,000 keys.
        assert abs(share - p) <= 5 * math.sqrt(p * (1 - p) / len(KEYS)) + 1e-9, f"{target} at {weight}%: {share:.4%}"


def test_raising_the_weight_only_adds_keys(ramp: tuple[str, list[Written], dict[float, bytes]]) -> None:
    target, _, exposed = ramp
    weights = sorted(exposed)
    for lower, higher in itertools.pairwise(weights):
        lost = [KEYS[i] for i, (was, now) in enumerate(zip(exposed[lower], exposed[higher], strict=True))
                if was and not now]
        assert not lost, f"{target}: {len(lost)} keys lost on going from {lower}% to {higher}%, e.g. {lost[:3]}"


def test_zero_is_nobody_and_hundred_is_everybody(ramp: tuple[str, list[Written], dict[float, bytes]]) -> None:
    _, _, exposed = ramp
    assert not any(exposed[0])
    assert all(exposed[100])


def test_the_weight_read_back_is_the_weight_written(ramp: tuple[str, list[Written], dict[float, bytes]]) -> None:
    target, writes, _ = ramp
    assert [w.read_back for w in writes] == list(RAMP), target
    for written in writes:  # integer weights: flagd 2.0 refuses any other
        for _, relative in written.document["flags"][FLAG]["targeting"]["fractional"]:
            assert type(relative) is int


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_other_flags_evaluate_exactly_as_before(target: str) -> None:
    before = {flag: resolve_all(BEFORE[target], flag) for flag in OTHER_FLAGS}
    # The rules really vary by key and attribute: a test that compared constants proves nothing.
    assert len({outcome[1] for outcome in before["by-email"]}) == 3
    assert len({outcome[1] for outcome in before["staff-only"]}) == 2
    assert len({outcome[1] for outcome in before["shared-rule"]}) == 2
    for written in TARGETS[target]():
        for flag in OTHER_FLAGS:
            assert resolve_all(written.document, flag) == before[flag], f"{target} at {written.weight}%: {flag}"
