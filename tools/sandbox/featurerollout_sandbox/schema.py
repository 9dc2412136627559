"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation, as kube-apiserver does.

Field paths and messages follow kube-apiserver's style (`spec.stages[0].weight`, `Required value`,
`Unsupported value: "x": supported values: "a", "b"`), so a test can assert on them.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

Json = dict[str, Any]
Cause = dict[str, str]
# (value, schema node, old value or MISSING, field path) -> causes; evaluates x-kubernetes-validations
RuleChecker = Callable[[Any, Json, Any, str], list[Cause]]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

ROOT_KEPT = ("apiVersion", "kind", "metadata")


def render_value(value: Any) -> str:
    """A value as kube-apiserver prints it in a field error (`"abc"`, `5`, `"object"`)."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value)


def json_type(value: Any) -> str:
    """The OpenAPI type name of a JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------- pruning


def prune(value: Any, schema: Json | None, root: bool = False, path: str = "", pruned: list[str] | None = None) -> Any:
    """Drop fields the schema does not declare (unless x-kubernetes-preserve-unknown-fields).

    The paths of dropped fields are appended to `pruned` (for `fieldValidation=Strict|Warn`).
    """
    if schema is None:
        return value
    if isinstance(value, dict):
        if schema.get("x-kubernetes-int-or-string"):
            return value
        props: Json = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        result: Json = {}
        for key, child in value.items():
            child_path = _join(path, key)
            if (root or embedded) and key in ROOT_KEPT:
                result[key] = child
            elif key in props:
                result[key] = prune(child, props[key], path=child_path, pruned=pruned)
            elif isinstance(additional, dict):
                result[key] = prune(child, additional, path=f"{path}[{key}]", pruned=pruned)
            elif preserve or additional is True:
                result[key] = child
            elif pruned is not None:
                pruned.append(child_path)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], path=f"{path}[{i}]", pruned=pruned) for i, item in enumerate(value)]
    return value


# -------------------------------------------------------------------------------------- defaulting


def apply_defaults(value: Any, schema: Json | None) -> Any:
    """Fill in `default`s of missing properties (recursively, into defaulted values too).

    Nulls in non-nullable fields are dropped first, as kube-apiserver does before defaulting.
    """
    if schema is None:
        return value
    if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
        props: Json = schema.get("properties") or {}
        result = dict(value)
        for key, child_schema in props.items():
            if key in result and result[key] is None and not child_schema.get("nullable"):
                del result[key]
            if key not in result and "default" in child_schema:
                result[key] = copy.deepcopy(child_schema["default"])
            if key in result:
                result[key] = apply_defaults(result[key], child_schema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(result):
                if key not in props:
                    result[key] = apply_defaults(result[key], additional)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


# -------------------------------------------------------------------------------------- validation

_FORMATS: dict[str, Callable[[str], bool]] = {}


def _format(name: str) -> Callable[[Callable[[str], bool]], Callable[[str], bool]]:
    def register(check: Callable[[str], bool]) -> Callable[[str], bool]:
        _FORMATS[name] = check
        return check

    return register


def _parses(parse: Callable[[str], Any], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


@_format("date-time")
def _is_datetime(text: str) -> bool:
    return bool(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)) and _parses(
        lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")), text
    )


@_format("date")
def _is_date(text: str) -> bool:
    return _parses(date.fromisoformat, text) and len(text) == 10


@_format("uuid")
def _is_uuid(text: str) -> bool:
    return _parses(uuid.UUID, text) and len(text) == 36


@_format("ipv4")
def _is_ipv4(text: str) -> bool:
    return _parses(ipaddress.IPv4Address, text)


@_format("ipv6")
def _is_ipv6(text: str) -> bool:
    return _parses(ipaddress.IPv6Address, text)


@_format("byte")
def _is_byte(text: str) -> bool:
    return _parses(lambda t: base64.b64decode(t, validate=True), text)


def _type_ok(value: Any, schema: Json) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    wanted = schema.get("type")
    actual = json_type(value)
    if not wanted:
        return True
    if wanted == "number":
        return actual in ("number", "integer")
    return bool(wanted == actual)


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {render_value(value)}: {detail}", "field": path}


def _number_checks(value: float, schema: Json, path: str) -> list[Cause]:
    causes: list[Cause] = []
    where = f"{path} in body"
    if "minimum" in schema:
        if schema.get("exclusiveMinimum") is True and value <= schema["minimum"]:
            causes.append(_invalid(path, value, f"{where} should be greater than {schema['minimum']}"))
        elif value < schema["minimum"]:
            causes.append(_invalid(path, value, f"{where} should be greater than or equal to {schema['minimum']}"))
    if "maximum" in schema:
        if schema.get("exclusiveMaximum") is True and value >= schema["maximum"]:
            causes.append(_invalid(path, value, f"{where} should be less than {schema['maximum']}"))
        elif value > schema["maximum"]:
            causes.append(_invalid(path, value, f"{where} should be less than or equal to {schema['maximum']}"))
    if "multipleOf" in schema and schema["multipleOf"] and (value / schema["multipleOf"]) % 1 != 0:
        causes.append(_invalid(path, value, f"{where} should be a multiple of {schema['multipleOf']}"))
    return causes


def _string_checks(value: str, schema: Json, path: str) -> list[Cause]:
    causes: list[Cause] = []
    where = f"{path} in body"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "message": f"Too long: may not be more than {schema['maxLength']} bytes",
                "field": path,
            }
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(_invalid(path, value, f"{where} should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        causes.append(_invalid(path, value, f"{where} should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt in _FORMATS and not _FORMATS[fmt](value):
        causes.append(_invalid(path, value, f"{where} must be of type {fmt}: {json.dumps(value)}"))
    return causes


def _list_map_duplicates(value: list[Any], schema: Json, path: str) -> list[Cause]:
    list_type = schema.get("x-kubernetes-list-type")
    causes: list[Cause] = []
    seen: list[Any] = []
    for i, item in enumerate(value):
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            ident: Any = tuple(item.get(k) for k in keys) if isinstance(item, dict) else item
        elif list_type == "set" or schema.get("uniqueItems"):
            ident = json.dumps(item, sort_keys=True)
        else:
            return []
        if ident in seen:
            shown = render_value(item) if list_type != "map" else "{" + ", ".join(
                f'"{k}":{json.dumps(item.get(k))}' for k in (schema.get("x-kubernetes-list-map-keys") or [])
            ) + "}"
            causes.append(
                {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {shown}", "field": f"{path}[{i}]"}
            )
        seen.append(ident)
    return causes


def validate(
    value: Any,
    schema: Json | None,
    path: str = "",
    old: Any = MISSING,
    rules: RuleChecker | None = None,
    root: bool = False,
) -> list[Cause]:
    """All violations of `schema` by `value` (after pruning and defaulting), CEL rules included."""
    if schema is None:
        return []
    if value is None:
        if schema.get("nullable"):
            return []
        wanted_type = schema.get("type", "object")
        return [
            {
                "reason": "FieldValueTypeInvalid",
                "message": f'Invalid value: "null": {path} in body must be of type {wanted_type}: "null"',
                "field": path,
            }
        ]
    if not _type_ok(value, schema):
        wanted = "integer-or-string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        actual = json_type(value)
        return [
            {
                "reason": "FieldValueTypeInvalid",
                "message": f'Invalid value: "{actual}": {path} in body must be of type {wanted}: "{actual}"',
                "field": path,
            }
        ]
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "message": f"Unsupported value: {render_value(value)}: supported values: {supported}",
                "field": path,
            }
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        causes += _number_checks(value, schema, path)
    elif isinstance(value, str):
        causes += _string_checks(value, schema, path)
    elif isinstance(value, list):
        causes += _validate_array(value, schema, path, old, rules)
    elif isinstance(value, dict):
        causes += _validate_object(value, schema, path, old, rules, root)
    for sub in schema.get("allOf") or []:
        causes += validate(value, {**sub, "type": sub.get("type")}, path, old, rules)
    if schema.get("anyOf") and not any(not validate(value, sub, path) for sub in schema["anyOf"]):
        causes.append(_invalid(path, value, f"{path} in body must match at least one schema in anyOf"))
    if schema.get("oneOf") and sum(1 for sub in schema["oneOf"] if not validate(value, sub, path)) != 1:
        causes.append(_invalid(path, value, f"{path} in body must validate one and only one schema (oneOf)"))
    if isinstance(schema.get("not"), dict) and not validate(value, schema["not"], path):
        causes.append(_invalid(path, value, f"{path} in body must not validate the schema (not)"))
    # CEL runs only on nodes whose own schema checks passed: kube-apiserver skips rules on ill-typed values
    if rules is not None and schema.get("x-kubernetes-validations") and not causes:
        causes += rules(value, schema, old, path)
    return causes


def _validate_array(value: list[Any], schema: Json, path: str, old: Any, rules: RuleChecker | None) -> list[Cause]:
    causes: list[Cause] = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            {
                "reason": "FieldValueTooMany",
                "message": f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                "field": path,
            }
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(_invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items"))
    causes += _list_map_duplicates(value, schema, path)
    items = schema.get("items")
    if isinstance(items, dict):
        old_items = _correlate_list(value, old, schema)
        for i, item in enumerate(value):
            causes += validate(item, items, f"{path}[{i}]", old_items[i], rules)
    return causes


def _correlate_list(value: list[Any], old: Any, schema: Json) -> list[Any]:
    """Old elements for transition rules: matched by map keys for list-type map, else none (atomic)."""
    if not isinstance(old, list) or schema.get("x-kubernetes-list-type") != "map":
        return [MISSING] * len(value)
    keys = schema.get("x-kubernetes-list-map-keys") or []

    def ident(item: Any) -> Any:
        return tuple(item.get(k) for k in keys) if isinstance(item, dict) else None

    by_key = {ident(item): item for item in old}
    return [by_key.get(ident(item), MISSING) for item in value]


def _validate_object(
    value: Json, schema: Json, path: str, old: Any, rules: RuleChecker | None, root: bool
) -> list[Cause]:
    if schema.get("x-kubernetes-int-or-string"):
        return []
    causes: list[Cause] = []
    for key in schema.get("required") or []:
        if key not in value:
            causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": _join(path, key)})
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            {
                "reason": "FieldValueTooMany",
                "message": f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                "field": path,
            }
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            _invalid(path, len(value), f"{path} in body should have at least {schema['minProperties']} properties")
        )
    props: Json = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    old_map = old if isinstance(old, dict) else {}
    for key, child in value.items():
        if root and key in ROOT_KEPT:
            continue
        if key in props:
            causes += validate(child, props[key], _join(path, key), old_map.get(key, MISSING), rules)
        elif isinstance(additional, dict):
            causes += validate(child, additional, f"{path}[{key}]", old_map.get(key, MISSING), rules)
    return causes
