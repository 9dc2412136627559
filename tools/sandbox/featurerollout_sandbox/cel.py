"""`x-kubernetes-validations`: CEL rules evaluated with cel-python, with kube-apiserver's typing.

Values reach CEL typed by their schema, as in kube-apiserver: `integer` -> int, `number` -> double
(even when the JSON holds `3`), `string` with format `duration`/`date-time` -> duration/timestamp,
`byte` -> bytes. Ordering comparisons between int and double are allowed (kube-apiserver enables
cel-go's CrossTypeNumericComparisons); `==` between int and double is an error, as kube-apiserver's
type checker would refuse it. A few Kubernetes CEL library functions that cel-python lacks are
registered here with kube-apiserver's semantics (see KUBERNETES_FUNCTIONS).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from functools import reduce
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

from featurerollout_sandbox.schema import MISSING, Cause, Json

_NUMBERS = (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)
_OLD_SELF = re.compile(r"\boldSelf\b")

# kube-apiserver's property-name escaping (k8s.io/apiserver/pkg/cel/escaping.go): a declared
# property whose name is a CEL reserved word or holds `.`, `-`, `/` or `__` is seen by rules under
# an escaped name (`namespace` -> `__namespace__`, as Gateway API's rules on parentRefs use it);
# a name that cannot be escaped is not visible to rules at all.
_CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
})
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
_EXPAND = re.compile(r"(__|[-./]|[^a-zA-Z0-9\-./_])")

_env = celpy.Environment()
_programs: dict[str, Any] = {}
_programs_lock = threading.Lock()


class RuleCompileError(ValueError):
    """A rule that cel-python cannot parse."""


# -------------------------------------------------------------------- Kubernetes library functions


def _cross_type(base: Callable[[Any, Any], Any], op: Callable[[float, float], bool]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS) and type(a) is not type(b):
            return celtypes.BoolType(op(float(a), float(b)))
        return base(a, b)

    return compare


def _is_sorted(items: Any) -> Any:
    values = list(items)
    return celtypes.BoolType(all(values[i] <= values[i + 1] for i in range(len(values) - 1)))


def _sum(items: Any) -> Any:
    values = list(items)
    if not values:
        return celtypes.IntType(0)
    return reduce(lambda a, b: a + b, values)


def _min(items: Any) -> Any:
    values = list(items)
    if not values:
        raise ValueError("min called on empty list")
    return min(values)


def _max(items: Any) -> Any:
    values = list(items)
    if not values:
        raise ValueError("max called on empty list")
    return max(values)


def _index_of(container: Any, item: Any) -> Any:
    if isinstance(container, celtypes.StringType):
        return celtypes.IntType(str(container).find(str(item)))
    values = list(container)
    return celtypes.IntType(values.index(item) if item in values else -1)


def _last_index_of(container: Any, item: Any) -> Any:
    if isinstance(container, celtypes.StringType):
        return celtypes.IntType(str(container).rfind(str(item)))
    values = list(container)
    return celtypes.IntType(len(values) - 1 - values[::-1].index(item) if item in values else -1)


def _lower_ascii(text: Any) -> Any:
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(text)))


def _upper_ascii(text: Any) -> Any:
    return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in str(text)))


def _trim(text: Any) -> Any:
    return celtypes.StringType(str(text).strip())


def _split(text: Any, sep: Any) -> Any:
    return celtypes.ListType([celtypes.StringType(s) for s in str(text).split(str(sep))])


def _join(items: Any, sep: Any = "") -> Any:
    return celtypes.StringType(str(sep).join(str(s) for s in items))


def _replace(text: Any, old: Any, new: Any) -> Any:
    return celtypes.StringType(str(text).replace(str(old), str(new)))


def _substring(text: Any, start: Any, end: Any = None) -> Any:
    s = str(text)
    return celtypes.StringType(s[int(start) :] if end is None else s[int(start) : int(end)])


def _string(value: Any) -> Any:
    """`string(x)`, formatting doubles as cel-go does (Go's shortest 'g': 50.0 -> "50")."""
    if isinstance(value, celtypes.DoubleType):
        number = float(value)
        if number.is_integer() and abs(number) < 1e21:
            return celtypes.StringType(str(int(number)))
        return celtypes.StringType(repr(number))
    return celtypes.StringType(value)


KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "string": _string,
    "_<_": _cross_type(celpy.evaluation.bool_lt, lambda a, b: a < b),
    "_<=_": _cross_type(celpy.evaluation.bool_le, lambda a, b: a <= b),
    "_>_": _cross_type(celpy.evaluation.bool_gt, lambda a, b: a > b),
    "_>=_": _cross_type(celpy.evaluation.bool_ge, lambda a, b: a >= b),
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _min,
    "max": _max,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "trim": _trim,
    "split": _split,
    "join": _join,
    "replace": _replace,
    "substring": _substring,
}


# ---------------------------------------------------------------------------------------- typing


def escape_property(name: str) -> str | None:
    """The name under which CEL rules see a declared property, as kube-apiserver escapes it;
    None when kube-apiserver cannot escape it (then rules do not see that property)."""
    if not name or name[0].isdigit():
        return None
    if name in _CEL_RESERVED:
        return f"__{name}__"
    unsupported = False

    def expand(match: re.Match[str]) -> str:
        nonlocal unsupported
        escaped = _ESCAPES.get(match.group(0))
        if escaped is None:
            unsupported = True
            return ""
        return escaped

    escaped = _EXPAND.sub(expand, name)
    return None if unsupported else escaped


def to_cel(value: Any, schema: Json | None) -> Any:
    """A JSON value as a CEL value, typed by its schema node as kube-apiserver types it."""
    if value is None:
        return None
    schema = schema or {}
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.StringType(value) if isinstance(value, str) else celtypes.IntType(value)
    kind = schema.get("type")
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "boolean":
        return celtypes.BoolType(value)
    if kind == "string":
        fmt = schema.get("format")
        try:
            if fmt == "duration":
                return celtypes.DurationType(value)
            if fmt == "date-time":
                return celtypes.TimestampType(value)
            if fmt == "byte":
                return celtypes.BytesType(value)
        except (ValueError, TypeError):
            pass
        return celtypes.StringType(value)
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(item, schema.get("items")) for item in value])
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        result = {}
        for key, child in value.items():
            if key in props:
                visible = escape_property(key)
                if visible is not None:
                    result[celtypes.StringType(visible)] = to_cel(child, props[key])
            elif isinstance(additional, dict):
                result[celtypes.StringType(key)] = to_cel(child, additional)
            else:
                result[celtypes.StringType(key)] = json_to_cel(child)
        return celtypes.MapType(result)
    return json_to_cel(value)


# ------------------------------------------------------------------------------------ evaluation


def program(rule: str) -> Any:
    """The compiled program of a rule (cached; compiling with lark is the slow part)."""
    with _programs_lock:
        if rule in _programs:
            return _programs[rule]
    try:
        ast = _env.compile(rule)
    except Exception as exc:
        raise RuleCompileError(f"compilation failed: {exc}".replace("\n", " ")) from exc
    compiled = _env.program(ast, functions=KUBERNETES_FUNCTIONS)
    with _programs_lock:
        _programs[rule] = compiled
    return compiled


def compile_errors(schema: Json | None, path: str = "spec.versions[0].schema.openAPIV3Schema") -> list[Cause]:
    """Rules in a CRD schema that do not compile (kube-apiserver refuses such a CRD)."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    for i, validation in enumerate(schema.get("x-kubernetes-validations") or []):
        for key in ("rule", "messageExpression"):
            if key in validation:
                try:
                    program(validation[key])
                except RuleCompileError as exc:
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {validation[key]!r}: {exc}",
                            "field": f"{path}.x-kubernetes-validations[{i}].{key}",
                        }
                    )
    for key, child in (schema.get("properties") or {}).items():
        causes += compile_errors(child, f"{path}.properties[{key}]")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            causes += compile_errors(schema[key], f"{path}.{key}")
    return causes


def _node_type(schema: Json) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer-or-string"
    return str(schema.get("type") or "object")


def _field_path(path: str, field_path: str | None) -> str:
    if not field_path:
        return path
    return path + field_path


_REASON_PREFIX = {
    "FieldValueForbidden": "Forbidden: {message}",
    "FieldValueRequired": "Required value: {message}",
    "FieldValueDuplicate": "Duplicate value: {type}",
}


def invalid_value(value: Any, message: str) -> str:
    """kube-apiserver 1.37's wording of a failed rule: the value itself when it is a scalar
    (`Invalid value: "b": ...`, `Invalid value: 5: ...`), no value for an object or a list."""
    if isinstance(value, (dict, list)) or value is MISSING:
        return f"Invalid value: {message}"
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, (int, float)):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
    elif value is None:
        shown = "null"
    else:
        shown = f'"{value}"'
    return f"Invalid value: {shown}: {message}"


def check_rules(value: Any, schema: Json, old: Any, path: str) -> list[Cause]:
    """Evaluate the node's x-kubernetes-validations with `self` (and `oldSelf` on updates) bound."""
    causes: list[Cause] = []
    node_type = _node_type(schema)
    for validation in schema.get("x-kubernetes-validations") or []:
        rule = validation.get("rule", "")
        transition = bool(_OLD_SELF.search(rule))
        if transition and old is MISSING and not validation.get("optionalOldSelf"):
            continue  # transition rules run only on updates where the old value exists
        activation: dict[str, Any] = {"self": to_cel(value, schema)}
        if transition:
            activation["oldSelf"] = to_cel(old, schema) if old is not MISSING else None
        field = _field_path(path, validation.get("fieldPath"))
        try:
            result = program(rule).evaluate(activation)
        except Exception as exc:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "{node_type}": rule {rule!r} evaluation error: {exc}',
                    "field": field,
                }
            )
            continue
        if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
            continue
        message = validation.get("message") or f"failed rule: {rule}"
        if validation.get("messageExpression"):
            # kube-apiserver falls back to `message` when messageExpression fails
            with contextlib.suppress(Exception):
                message = str(program(validation["messageExpression"]).evaluate(activation))
        reason = validation.get("reason") or "FieldValueInvalid"
        template = _REASON_PREFIX.get(reason)
        text = template.format(type=node_type, message=message) if template else invalid_value(value, message)
        causes.append({"reason": reason, "message": text, "field": field})
    return causes
