"""The JSON merge patch (RFC 7386) that turns what is stored into what the engine decided.

Why a merge patch with explicit nulls, and not the other two ways to write a status exactly:

- A merge patch keeps every key it does not mention. The operator once sent the whole status
  with unset fields left out, so `halt`, `finishedAt` and the like, once set, were never
  removed: a retried rollout stayed Paused behind its old halt, a resumed one paused again.
  Naming each key to remove as `null` makes the stored status equal the decided one.
- It keeps the guard the operator already relies on: `metadata.resourceVersion` in the patch
  makes the API server answer 409 Conflict when the object changed since it was read, the
  same answer a PUT gives, so the reconciler's "look again at once" path is unchanged. A JSON
  patch's `test` op on the resourceVersion would answer 422 instead, the code the API server
  also uses for a status that fails the schema: the two would be hard to tell apart.
- It sends only what changed (a tick that updates one metric is a few hundred bytes), where a
  PUT of the status subresource must send the whole object, spec included.

Arrays are replaced whole by a merge patch, so `metrics` and `conditions` are always sent in
full when they change. Pure: tested against an independent RFC 7386 implementation.
"""

from __future__ import annotations

from typing import Any


def diff(current: Any, desired: Any) -> Any:
    """The merge patch P such that merge(current, P) == desired.

    `desired` must hold no nulls inside objects (a merge patch cannot set a member to null);
    the API models' wire form never does.
    """
    if not isinstance(desired, dict) or not isinstance(current, dict):
        _check_no_nulls(desired)
        return desired
    patch: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        if key not in current:
            _check_no_nulls(value)
            patch[key] = value
        elif current[key] != value:
            patch[key] = diff(current[key], value)
    return patch


def _check_no_nulls(value: Any) -> None:
    if value is None:
        raise ValueError("a merge patch cannot store a null member")
    if isinstance(value, dict):
        for item in value.values():
            _check_no_nulls(item)
