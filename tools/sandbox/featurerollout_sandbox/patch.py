"""PATCH bodies: JSON merge patch, JSON patch, and a simplified strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from featurerollout_sandbox.errors import ApiError

Json = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
CR_PATCH_TYPES = (JSON_PATCH, MERGE, APPLY)

# Lists of built-in kinds that strategic merge patch merges instead of replacing:
# path (dotted, from the object root) -> merge key, or None for a set of primitives.
STRATEGIC_LIST_KEYS: dict[str, str | None] = {
    "metadata.finalizers": None,
    "metadata.ownerReferences": "uid",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Json, operations: Any) -> Json:
    """RFC 6902. A failed `test` op, or an op on a missing path, answers 422 like kube-apiserver."""
    if not isinstance(operations, list):
        raise ApiError(400, "json patch must be a JSON array of operations")
    try:
        patch = jsonpatch.JsonPatch(operations)
    except Exception as exc:  # malformed operations
        raise ApiError(400, f"invalid json patch: {exc}") from exc
    try:
        result = patch.apply(copy.deepcopy(target))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError) as exc:
        raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
    if not isinstance(result, dict):
        raise ApiError(422, "json patch must leave an object")
    return result


def strategic_merge_patch(target: Any, patch: Any, path: str = "") -> Any:
    """A simplified strategic merge patch for built-in kinds.

    Supported: merge-patch semantics; `$patch: replace` and `$patch: delete` in maps;
    `$retainKeys`; `$deleteFromPrimitiveList/<field>`; list merging by key for the lists in
    STRATEGIC_LIST_KEYS. Ignored: `$setElementOrder/<field>` (list order follows the patch merge).
    Every other list is replaced, as a merge patch would.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        child_path = f"{path}.{key}" if path else key
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, list) and child_path in STRATEGIC_LIST_KEYS:
            result[key] = _merge_list(result.get(key), value, STRATEGIC_LIST_KEYS[child_path])
        else:
            result[key] = strategic_merge_patch(result.get(key), value, child_path)
    return result


def _merge_list(current: Any, patch: list[Any], merge_key: str | None) -> list[Any]:
    items = list(current) if isinstance(current, list) else []
    if merge_key is None:  # a set of primitives: the patch's items first, then the others, as kube-apiserver
        return list(patch) + [v for v in items if v not in patch]
    for entry in patch:
        if not isinstance(entry, dict):
            continue
        index = next((i for i, it in enumerate(items) if it.get(merge_key) == entry.get(merge_key)), None)
        if entry.get("$patch") == "delete":
            if index is not None:
                items.pop(index)
        elif index is None:
            items.append({k: v for k, v in entry.items() if k != "$patch"})
        else:
            items[index] = strategic_merge_patch(items[index], entry)
    return items
