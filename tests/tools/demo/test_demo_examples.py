"""examples/demo/: the rollouts are valid for the models and the CRD, and the flags document is what
the demo expects (the three demo flags at 0%, an unrelated flag beside them)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.api.crd_helpers import apply_defaults, cel_errors, root_schema, schema_errors

from featurerollout import api
from featurerollout.edges.targets.flagd import read_flag_weight
from featurerollout_demo.__main__ import EXAMPLES, ROLLOUTS, load_documents, with_prometheus

ROLLOUT_FILES = [EXAMPLES / name for name, _ in ROLLOUTS]
PLACEHOLDER = "http://127.0.0.1:9090"


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize("path", ROLLOUT_FILES, ids=[p.name for p in ROLLOUT_FILES])
def test_demo_rollout_is_valid_for_models_and_crd(path: Path) -> None:
    obj = load(path)
    rollout = api.parse_rollout(copy.deepcopy(obj))
    assert schema_errors(obj) == []
    assert cel_errors(obj) == []
    defaulted = apply_defaults(copy.deepcopy(obj), root_schema())
    assert schema_errors(defaulted) == [] and cel_errors(defaulted) == []
    assert rollout.metadata.namespace == "shop"
    spec = rollout.spec
    assert [s.weight for s in spec.stages] == [10, 25, 50, 100]
    assert all(s.hold.total_seconds() <= 10 for s in spec.stages), "the demo must end within about a minute"
    assert spec.analysis is not None
    assert spec.analysis.on_no_data == api.OnNoData.HOLD
    if path.name == "slow-rollout.yaml":
        # Budgeted through the shared ClusterMetricTemplates, no Prometheus of its own: the operator's
        # --prometheus-address serves it.
        assert spec.analysis.prometheus is None
        refs = [(m.name, m.template_ref.name if m.template_ref else None, m.max) for m in spec.analysis.metrics]
        assert refs == [("error-rate", "error-rate", 0.05), ("latency-p95", "latency-p95", None)]
        return
    assert spec.analysis.prometheus is not None and spec.analysis.prometheus.address == PLACEHOLDER
    assert spec.analysis.every.total_seconds() == 2
    assert [(m.name, m.max, m.failure_limit) for m in spec.analysis.metrics] == [("error-rate", 0.05, 1)]
    assert '{flag="{{flag}}",variant="on"' in (spec.analysis.metrics[0].query or "")


def test_the_three_rollouts_are_new_checkout_new_search_and_new_pricing() -> None:
    assert [load(p)["spec"]["flag"] for p in ROLLOUT_FILES] == ["new-checkout", "new-search", "new-pricing"]
    assert [phase for _, phase in ROLLOUTS] == ["Succeeded", "RolledBack", "RolledBack"]


def test_the_slow_rollout_stays_within_its_error_budget_and_breaks_its_latency_budget() -> None:
    """What the demo service does to new-pricing, against the templates' budgets: the p95 of a typical
    0.2 s (uniform 0.1-0.3 s) is far above 0.1 s, and it never fails."""
    from featurerollout_demo.__main__ import CAUSES, METRIC_TEMPLATES, SLOW_FLAG, SLOW_LATENCY

    latency = load(METRIC_TEMPLATES / "latency-p95.yaml")["spec"]
    assert 2 * latency["max"] < 1.45 * SLOW_LATENCY  # the p95 is more than twice the budget
    assert latency["max"] / 2 > 1.45 * 0.03  # the default latency's p95 (45 ms) is under half of it
    assert CAUSES[SLOW_FLAG] == ("latency-p95", ("error-rate",))


def test_the_demo_replaces_the_placeholder_prometheus_address() -> None:
    doc = with_prometheus(load(ROLLOUT_FILES[0]), "http://127.0.0.1:41234")
    assert doc["spec"]["analysis"]["prometheus"]["address"] == "http://127.0.0.1:41234"
    api.parse_rollout(doc)


def test_flags_configmap_holds_both_demo_flags_at_zero_and_an_unrelated_flag() -> None:
    namespace, configmap = load_documents(EXAMPLES / "flags-configmap.yaml")
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "shop")
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"] == {"name": "feature-flags", "namespace": "shop"}
    text = configmap["data"]["flags.flagd.json"]
    assert set(json.loads(text)["flags"]) == {"dark-mode", "new-checkout", "new-search", "new-pricing"}
    assert read_flag_weight(text, "new-checkout") == 0
    assert read_flag_weight(text, "new-search") == 0
    assert read_flag_weight(text, "new-pricing") == 0
