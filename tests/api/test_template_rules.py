"""Metric templates in the API: a rollout's templateRef metric, and the MetricTemplate and
ClusterMetricTemplate kinds. Each rule is refused by the models and by the CRD (schema + CEL) with a
message that names the field; where the real kube-apiserver runs, it refuses too (a dry-run create)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from featurerollout import api
from featurerollout.api.crd import CLUSTER_METRIC_TEMPLATE, KINDS, METRIC_TEMPLATE, Kind, render_crd
from tests.api import crd_helpers
from tests.api.crd_helpers import apply_defaults, cel_errors, crd_errors, pydantic_problems, real_server_refusal
from tests.support.paths import REPO


def spec_with(metric: dict[str, Any], prometheus: bool = True) -> dict[str, Any]:
    analysis: dict[str, Any] = {"interval": "1m", "metrics": [metric]}
    if prometheus:
        analysis["prometheus"] = {"address": "http://prometheus:9090"}
    return {"flag": "f", "target": {"configMap": {"name": "flags"}}, "analysis": analysis}


TEMPLATED = {"name": "error-rate", "templateRef": {"name": "error-rate", "kind": "ClusterMetricTemplate"},
             "args": {"variant": "on"}}


def refused(spec: dict[str, Any], path: str, message: str) -> None:
    problems = pydantic_problems(spec)
    assert any(p.startswith(path) and message in p for p in problems), problems
    errors = crd_errors(spec)
    assert any(e.startswith(path) and message in e for e in errors), errors
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and path in refusal and message in refusal, refusal


def test_a_templateref_metric_needs_no_budget_nor_prometheus() -> None:
    for spec in (spec_with(TEMPLATED), spec_with(TEMPLATED, prometheus=False),
                 spec_with({"name": "m", "query": "vector(0)", "max": 1}, prometheus=False)):
        assert pydantic_problems(spec) == []
        assert crd_errors(spec) == []
        assert real_server_refusal(spec) is None


def test_kind_defaults_to_metric_template() -> None:
    spec = spec_with({"name": "m", "templateRef": {"name": "t"}})
    parsed = api.parse_spec(copy.deepcopy(spec))
    assert parsed.analysis is not None
    ref = parsed.analysis.metrics[0].template_ref
    assert ref is not None and ref.kind == api.TemplateKind.METRIC_TEMPLATE
    assert apply_defaults(copy.deepcopy(spec), crd_helpers.spec_schema()) == parsed.to_wire()


def test_failure_limit_is_not_defaulted_so_a_templates_can_apply() -> None:
    spec = spec_with({"name": "m", "templateRef": {"name": "t"}})
    stored = apply_defaults(copy.deepcopy(spec), crd_helpers.spec_schema())
    assert "failureLimit" not in stored["analysis"]["metrics"][0]
    parsed = api.parse_spec(stored)
    assert parsed.analysis is not None
    assert "failure_limit" not in parsed.analysis.metrics[0].model_fields_set
    assert parsed.analysis.metrics[0].failure_limit == 0  # a plain metric still reads 0
    written = spec_with({"name": "m", "templateRef": {"name": "t"}, "failureLimit": 0})
    assert api.parse_spec(written).to_wire()["analysis"]["metrics"][0]["failureLimit"] == 0


@pytest.mark.parametrize(
    "extra",
    [{"query": "vector(0)"}, {"compare": {"treatment": {"errors": "a", "total": "b"},
                                          "control": {"errors": "c", "total": "d"}, "maxRatio": 2}}],
)
def test_templateref_excludes_query_and_compare(extra: dict[str, Any]) -> None:
    refused(spec_with({**TEMPLATED, **extra, "max": 1} if "query" in extra else {**TEMPLATED, **extra}),
            "spec.analysis.metrics[0]", api.METRIC_KIND_MESSAGE)


def test_args_need_a_templateref() -> None:
    refused(spec_with({"name": "m", "query": "vector(0)", "max": 1, "args": {"a": "b"}}),
            "spec.analysis.metrics[0].args", api.METRIC_ARGS_MESSAGE)


def test_arg_names_are_identifiers() -> None:
    refused(spec_with({**TEMPLATED, "args": {"1bad": "x"}}), "spec.analysis.metrics[0].args",
            api.ARG_NAME_MESSAGE)


def test_templateref_kind_is_one_of_the_two() -> None:
    spec = spec_with({"name": "m", "templateRef": {"name": "t", "kind": "AnalysisTemplate"}})
    assert any(p.startswith("spec.analysis.metrics[0].templateRef.kind: ") for p in pydantic_problems(spec))
    assert any(e.startswith("analysis.metrics[0].templateRef.kind: ") or
               e.startswith("spec.analysis.metrics[0].templateRef.kind: ") for e in crd_errors(spec))
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and "spec.analysis.metrics[0].templateRef.kind" in refusal


def test_overridden_bounds_still_ordered() -> None:
    refused(spec_with({**TEMPLATED, "min": 2, "max": 1}), "spec.analysis.metrics[0]", "must not be greater")


# --- the template kinds ----------------------------------------------------------------------------


@functools.cache
def _rendered(kind_name: str) -> dict[str, Any]:
    return render_crd(next(k for k in KINDS if k.kind == kind_name))


def _template_crd(kind: Kind) -> dict[str, Any]:
    return _rendered(kind.kind)


def template_errors(kind: Kind, spec: dict[str, Any]) -> list[str]:
    schema = _template_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {"apiVersion": "featurerollout.io/v1alpha1", "kind": kind.kind, "metadata": {"name": "t"}, "spec": spec}
    validator = jsonschema.Draft4Validator(schema)
    errors = [crd_helpers._path(e.absolute_path) + f": {e.message}" for e in validator.iter_errors(obj)]
    return errors + cel_errors(obj, schema)


def template_model_problems(spec: dict[str, Any]) -> list[str]:
    try:
        api.MetricTemplateSpec.model_validate(spec)
    except ValidationError as error:
        return api.field_problems(error, "spec")
    return []


def real_template_refusal(kind: Kind, spec: dict[str, Any]) -> str | None:
    if crd_helpers.REAL_SERVER is None:
        return None
    path = ("/apis/featurerollout.io/v1alpha1/" + ("namespaces/default/" if kind.scope == "Namespaced" else "")
            + kind.plural)
    body = {"apiVersion": "featurerollout.io/v1alpha1", "kind": kind.kind, "metadata": {"name": "t"}, "spec": spec}
    response = crd_helpers.REAL_SERVER.post(path, params={"dryRun": "All"}, json=body)
    if response.status_code == 201:
        return None
    assert response.status_code == 422, response.text
    return str(response.json()["message"])


GOOD_TEMPLATE = {
    "query": 'sum(rate(x{flag="{{flag}}",variant="{{args.variant}}"}[{{interval}}]))',
    "args": [{"name": "variant", "value": "on"}, {"name": "service"}],
    "prometheus": {"address": "http://prometheus:9090", "auth": {"secretName": "prom"}},
    "max": 0.01,
    "failureLimit": 1,
}


def test_both_kinds_are_rendered_with_their_scope() -> None:
    assert [k.kind for k in KINDS] == ["FeatureRollout", "MetricTemplate", "ClusterMetricTemplate"]
    assert render_crd(METRIC_TEMPLATE)["spec"]["scope"] == "Namespaced"
    assert render_crd(CLUSTER_METRIC_TEMPLATE)["spec"]["scope"] == "Cluster"
    assert "subresources" not in render_crd(CLUSTER_METRIC_TEMPLATE)["spec"]["versions"][0]


@pytest.mark.parametrize("kind", [METRIC_TEMPLATE, CLUSTER_METRIC_TEMPLATE], ids=lambda k: k.kind)
def test_a_good_template_passes(kind: Kind) -> None:
    assert template_model_problems(GOOD_TEMPLATE) == []
    assert template_errors(kind, GOOD_TEMPLATE) == []
    assert real_template_refusal(kind, GOOD_TEMPLATE) is None


@pytest.mark.parametrize("kind", [METRIC_TEMPLATE, CLUSTER_METRIC_TEMPLATE], ids=lambda k: k.kind)
@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"min": 1, "max": 0.5}, "spec.min", "must not be greater than max"),
        ({"args": [{"name": "a"}, {"name": "a"}]}, "spec.args", api.TEMPLATE_ARGS_UNIQUE_MESSAGE),
        ({"args": [{"name": "9a"}]}, "spec.args[0].name", ""),
        ({"failureLimit": -1}, "spec.failureLimit", ""),
        ({"query": ""}, "spec.query", ""),
        ({"prometheus": {"address": "prometheus:9090"}}, "spec.prometheus.address", ""),
    ],
)
def test_template_rules(kind: Kind, change: dict[str, Any], path: str, message: str) -> None:
    spec = {**GOOD_TEMPLATE, **change}
    problems = template_model_problems(spec)
    model_path = path if path != "spec.min" else "spec"  # the models word the bounds rule on the spec
    assert any(p.startswith(model_path) and message in p for p in problems), problems
    errors = template_errors(kind, spec)
    assert any(e.startswith(path) and message in e for e in errors), errors
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_template_refusal(kind, spec)
        assert refusal is not None and f"{path}: " in refusal, refusal


def test_a_template_needs_a_query() -> None:
    spec = {k: v for k, v in GOOD_TEMPLATE.items() if k != "query"}
    assert any(p.startswith("spec.query") for p in template_model_problems(spec))
    assert any(e.startswith("spec: ") and "query" in e for e in template_errors(CLUSTER_METRIC_TEMPLATE, spec))
    refusal = real_template_refusal(CLUSTER_METRIC_TEMPLATE, spec)
    assert crd_helpers.REAL_SERVER is None or (refusal is not None and "spec.query" in refusal)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_committed_crd_is_what_the_models_render(kind: Kind) -> None:

    from featurerollout.api.crd import render_crd_yaml

    committed = REPO / "crds" / kind.file_name
    assert committed.read_text(encoding="utf-8") == render_crd_yaml(kind), (
        f"crds/{kind.file_name} is out of date with the API models (api/): run `make crd` and commit it")


def test_crd_all_prints_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from featurerollout.commands.cli import main

    assert main(["crd", "--all"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["spec"]["names"]["kind"] for d in docs] == [k.kind for k in KINDS]
