"""kube-apiserver applies the CRD's defaults itself: they must equal the models' defaults exactly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from featurerollout import api
from tests.api.crd_helpers import apply_defaults, crd_errors, spec_schema

SPECS: dict[str, dict[str, Any]] = {
    "minimal": {"flag": "new-checkout", "target": {"configMap": {"name": "feature-flags"}}},
    "httpRoute": {
        "flag": "f",
        "target": {"httpRoute": {"name": "shop", "stableBackend": "a", "featureBackend": "b"}},
        "stages": [{"weight": 50}, {"weight": 100, "duration": "5m"}],
    },
    "minimal-analysis": {
        "flag": "f",
        "target": {"featureFlag": {"name": "flags"}},
        "analysis": {
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [{"name": "error-rate", "query": "vector(0)", "max": 0.01}],
        },
        "rollback": {},
    },
    "everything-set": {
        "flag": "f",
        "target": {"webhook": {"url": "https://flags.example", "secretRef": {"name": "s", "key": "k"}}},
        "stages": [{"weight": 1, "duration": "30s"}, {"weight": 100}],
        "analysis": {
            "interval": "10s",
            "prometheus": {
                "address": "https://p",
                "timeout": "3s",
                "auth": {"secretName": "prom"},
                "headers": {"X-Scope-OrgID": "shop"},
                "insecureSkipVerify": True,
            },
            "metrics": [{"name": "m", "query": "q", "min": 1, "failureLimit": 2}],
            "onNoData": "Rollback",
            "consecutiveErrorLimit": 1,
            "onError": "Pause",
        },
        "rollback": {"automatic": False},
        "paused": True,
    },
}


@pytest.mark.parametrize("name", SPECS)
def test_crd_defaults_equal_model_defaults(name: str) -> None:
    spec = SPECS[name]
    by_models = api.parse_spec(copy.deepcopy(spec)).to_wire()
    by_crd = apply_defaults(copy.deepcopy(spec), spec_schema())
    assert by_crd == by_models
    assert crd_errors(by_crd) == []


def test_default_stages_are_the_seed_ramp() -> None:
    assert spec_schema()["properties"]["stages"]["default"] == [
        {"weight": 10, "duration": "1h"},
        {"weight": 25, "duration": "1h"},
        {"weight": 50, "duration": "1h"},
        {"weight": 100},
    ]
    assert spec_schema()["properties"]["rollback"]["default"] == {"automatic": True}


def test_status_defaults_equal_model_defaults() -> None:
    from tests.api.crd_helpers import root_schema

    schema = root_schema()["properties"]["status"]
    assert apply_defaults({}, schema) == api.FeatureRolloutStatus().to_wire()
