"""Check objects against the rendered CRD the way kube-apiserver would, without a kube-apiserver.

- `schema_errors`: the OpenAPI schema rules (types, bounds, patterns, enums, required), checked by
  `jsonschema`'s Draft 4 validator, which reads OpenAPI v3.0's boolean `exclusiveMinimum` natively.
- `cel_errors`: every `x-kubernetes-validations` rule, evaluated by `celpy` (standard CEL) with
  `self` bound to its node; values are converted by the schema as kube-apiserver does (a
  `type: number` field is a double even when written `100`).
- `apply_defaults`: kube-apiserver's structural defaulting (absent fields get their schema
  default, then defaulting recurses into the result).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from featurerollout import api
from featurerollout.api.crd import render_crd

API_VERSION = "featurerollout.io/v1alpha1"


@functools.cache
def _crd() -> dict[str, Any]:
    return render_crd()


def crd() -> dict[str, Any]:
    """A fresh copy of the rendered CRD."""
    return copy.deepcopy(_crd())


def root_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema."""
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def spec_schema() -> dict[str, Any]:
    """The schema of `spec`."""
    return root_schema()["properties"]["spec"]  # type: ignore[no-any-return]


def wrap(spec: dict[str, Any], name: str = "example") -> dict[str, Any]:
    """A whole FeatureRollout object around a spec."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FeatureRollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """`path: message` for every OpenAPI schema rule the whole object breaks."""
    validator = jsonschema.Draft4Validator(root_schema())
    return sorted(f"{_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj))


# --- CEL -----------------------------------------------------------------------------------------

_ENV = celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as the CEL value kube-apiserver binds, typed by its schema (unknown fields pruned)."""
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        members: dict[Any, Any] = {}
        for key, item in value.items():
            sub = properties.get(key) if properties is not None else extra
            if isinstance(sub, dict):
                members[celtypes.StringType(key)] = to_cel(item, sub)
        return celtypes.MapType(members)
    if kind == "array":
        return celtypes.ListType([to_cel(item, schema["items"]) for item in value])
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(int(value))
    if kind == "boolean":
        return celtypes.BoolType(bool(value))
    if kind == "string":
        return celtypes.StringType(value)
    raise AssertionError(f"no CEL conversion for schema type {kind!r}")


def cel_errors(obj: Any, schema: dict[str, Any] | None = None, path: str = "") -> list[str]:
    """`path: message` for every CEL rule the object breaks (or that fails to evaluate)."""
    schema = root_schema() if schema is None else schema
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            result = _program(rule["rule"]).evaluate({"self": to_cel(obj, schema)})
        except Exception as error:  # kube-apiserver reports an evaluation error as invalid too
            errors.append(f"{path}: {rule['message']} (evaluation error: {error})")
            continue
        if not isinstance(result, celtypes.BoolType) or not bool(result):
            errors.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    if isinstance(obj, dict):
        properties = schema.get("properties", {})
        for key, value in obj.items():
            if key in properties:
                errors += cel_errors(value, properties[key], f"{path}.{key}" if path else key)
    elif isinstance(obj, list) and "items" in schema:
        for index, value in enumerate(obj):
            errors += cel_errors(value, schema["items"], f"{path}[{index}]")
    return errors


def pydantic_problems(spec: dict[str, Any]) -> list[str]:
    """The `path: message` lines the models give, or [] when they accept the spec."""
    try:
        api.parse_spec(spec)
    except api.InvalidFeatureRollout as error:
        return error.problems
    return []


def crd_errors(spec: dict[str, Any]) -> list[str]:
    """Everything the CRD (schema and CEL) refuses in a spec, as `spec.path: message` lines."""
    obj = wrap(spec)
    return schema_errors(obj) + cel_errors(obj)


# --- the real kube-apiserver -----------------------------------------------------------------------

# Set by tests/api/conftest.py for the session when the real server tier runs: an httpx client
# on the real kube-apiserver, as its admin.
REAL_SERVER: Any = None
ROLLOUTS = "/apis/featurerollout.io/v1alpha1/namespaces/default/featurerollouts"


def real_server_refusal(spec: dict[str, Any]) -> str | None:
    """What the real kube-apiserver answers to a dry-run create of the spec: its message when it
    refuses (422), None when it accepts (201). None too when no real server runs this session."""
    if REAL_SERVER is None:
        return None
    response = REAL_SERVER.post(ROLLOUTS, params={"dryRun": "All"}, json=wrap(spec))
    if response.status_code == 201:
        return None
    assert response.status_code == 422, response.text
    return str(response.json()["message"])


# --- defaulting ----------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """kube-apiserver's structural defaulting, in place; returns the value for convenience."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                apply_defaults(item, properties[key])
            elif isinstance(extra, dict):
                apply_defaults(item, extra)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def iter_rule_messages() -> list[str]:
    """The message of every CEL rule in the CRD."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        found.extend(rule["message"] for rule in node.get("x-kubernetes-validations", []))
        for sub in node.get("properties", {}).values():
            walk(sub)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(root_schema())
    return found
