"""The examples under examples/ are valid for the models and for the CRD."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from featurerollout import api
from tests.api.crd_helpers import apply_defaults, cel_errors, root_schema, schema_errors
from tests.support.paths import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_the_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"new-checkout.yaml", "minimal.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_valid_for_models_and_crd(path: Path) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    rollout = api.parse_rollout(copy.deepcopy(obj))
    assert schema_errors(obj) == []
    assert cel_errors(obj) == []
    defaulted = apply_defaults(copy.deepcopy(obj), root_schema())
    assert schema_errors(defaulted) == []
    assert cel_errors(defaulted) == []
    assert defaulted["spec"] == rollout.spec.to_wire()


def test_new_checkout_is_the_api_md_example() -> None:
    obj = yaml.safe_load((EXAMPLES[0].parent / "new-checkout.yaml").read_text(encoding="utf-8"))
    spec = api.parse_rollout(obj).spec
    assert spec.target.kind == "configMap"
    assert spec.analysis is not None
    assert spec.analysis.prometheus.address == "http://prometheus.monitoring:9090"
    assert [m.name for m in spec.analysis.metrics] == ["error-rate"]
    assert [s.weight for s in spec.stages] == [10, 25, 50, 100]
