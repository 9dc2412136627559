"""`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: what `kubectl get` prints.

Custom resources get their CRD's additionalPrinterColumns (JSONPath `.a.b[0]` and
`[?(@.k=="v")]` filters); built-ins get the columns kube-apiserver prints for them.
Ages are rendered on the server, as kube-apiserver does (`translateTimestampSince`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from featurerollout_sandbox.resources import ResourceType

Json = dict[str, Any]
Column = tuple[Json, Callable[[Json], Any]]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically."
)
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    """Whether the client asked for a meta.k8s.io Table."""
    return "as=Table" in accept.replace(" ", "")


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str:
    """`5m` for a timestamp five minutes ago; `<unknown>` without one."""
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate a simple JSONPath (`.spec.flag`, `.status.conditions[0].type`, `[?(@.type=="Ready")]`)."""
    node = obj
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    pos = 0
    while pos < len(text) and node is not None:
        m = _STEP.match(text, pos)
        if not m:
            return None
        pos = m.end()
        key, index, filter_key, filter_value = m.groups()
        if key is not None:
            node = node.get(key) if isinstance(node, dict) else None
        elif index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        elif isinstance(node, list):
            node = next((item for item in node if str(jsonpath(item, "." + filter_key)) == filter_value), None)
        else:
            node = None
    return node


def _cell(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return age(value)
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, str) else json.dumps(value)


def _col(name: str, kind: str = "string", fmt: str = "", description: str = "", priority: int = 0) -> Json:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


def _name_column() -> Column:
    return _col("Name", fmt="name", description=NAME_DESCRIPTION), lambda o: o["metadata"]["name"]


def _age_column() -> Column:
    return (
        _col("Age", description="CreationTimestamp is a timestamp representing the server time when this "
             "object was created."),
        lambda o: age(o["metadata"].get("creationTimestamp")),
    )


def _builtin_columns(plural: str) -> list[Column]:
    if plural == "configmaps":
        return [_name_column(), (_col("Data", "integer"), lambda o: len(o.get("data") or {})
                                 + len(o.get("binaryData") or {})), _age_column()]
    if plural == "secrets":
        return [_name_column(), (_col("Type"), lambda o: o.get("type", "Opaque")),
                (_col("Data", "integer"), lambda o: len(o.get("data") or {})), _age_column()]
    if plural == "namespaces":
        return [_name_column(), (_col("Status"), lambda o: (o.get("status") or {}).get("phase", "Active")),
                _age_column()]
    if plural == "events":
        def involved(o: Json) -> str:
            ref = o.get("involvedObject") or o.get("regarding") or {}
            return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"

        def last_seen(o: Json) -> str:
            return age(o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp"))

        return [(_col("Last Seen"), last_seen), (_col("Type"), lambda o: o.get("type", "")),
                (_col("Reason"), lambda o: o.get("reason", "")), (_col("Object"), involved),
                (_col("Message"), lambda o: o.get("message") or o.get("note") or "")]
    if plural == "leases":
        return [_name_column(), (_col("Holder"), lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
                _age_column()]
    if plural == "customresourcedefinitions":
        return [_name_column(), (_col("Created At", "date"), lambda o: o["metadata"].get("creationTimestamp"))]
    return [_name_column(), _age_column()]


def columns(rt: ResourceType, version: str) -> list[Column]:
    """The columns of a resource's table, with how to compute each cell."""
    if rt.builtin:
        return _builtin_columns(rt.plural)
    v = rt.version(version)
    printer = v.printer_columns if v else []
    if not printer:
        return [_name_column(), _age_column()]
    result = [_name_column()]
    for column in printer:
        kind = column.get("type", "string")
        path = column.get("jsonPath", "")
        definition = _col(column["name"], kind, column.get("format", ""), column.get("description", ""),
                          int(column.get("priority", 0)))

        def compute(o: Json, path: str = path, kind: str = kind) -> Any:
            return _cell(jsonpath(o, path), kind)

        result.append((definition, compute))
    return result


def table(rt: ResourceType, version: str, objects: list[Json], resource_version: str, include: str) -> Json:
    """A meta.k8s.io/v1 Table of `objects` (already served in `version`)."""
    cols = columns(rt, version)
    rows = []
    for obj in objects:
        row: Json = {"cells": [compute(obj) for _, compute in cols]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [definition for definition, _ in cols],
        "rows": rows,
    }
