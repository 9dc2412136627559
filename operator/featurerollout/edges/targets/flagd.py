"""The flagd flag-definition document: build our flag's entry and splice it into someone's JSON.

A flagd document (`{"flags": {...}}`) usually holds many flags, written by people and other
tools. The operator owns exactly one entry. To keep every other flag byte-for-byte (formatting,
key order, number spelling and all), it never re-serialises the whole document: it locates the
text span of its own entry and replaces only that span. Everything here is pure.

Bounds: a document is parsed only if it is at most MAX_DOCUMENT_BYTES (a ConfigMap holds at most
1 MiB) and nests arrays and objects at most MAX_DEPTH deep (JSON parsing recurses once a level: a
few thousand levels in someone's flag would otherwise raise RecursionError); both are checked
without recursion before parsing, and a document we would write past the size cap is refused too.
Either way, InvalidDocument: the document is left untouched and the rollout says why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
ON, OFF = "on", "off"
MAX_DOCUMENT_BYTES = 1024 * 1024  # a ConfigMap's data holds at most 1 MiB in all
MAX_DEPTH = 256  # arrays and objects within one another; flagd's targeting rules nest a few dozen at most


class InvalidDocument(ValueError):
    """The document is not a flagd flag-definition JSON object; it must not be overwritten."""


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, found without recursion (strings skipped)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth = depth + 1 if char in "[{" else depth - 1
        deepest = max(deepest, depth)
    return deepest


def value_depth(value: Any) -> int:
    """How deep lists and dicts nest in a parsed value, found without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_bounds(text: str) -> None:
    """InvalidDocument when the text is larger or deeper than the operator parses (see the module)."""
    size = len(text.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidDocument(f"{size} bytes, more than the {MAX_DOCUMENT_BYTES} (1 MiB) the operator parses")
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise InvalidDocument(
            f"arrays and objects nested {depth} deep, more than the {MAX_DEPTH} the operator parses"
        )


def relative_weights(weight: float) -> tuple[int, int]:
    """Integer fractional weights (on, off) for a percentage: 25 -> (25, 75), 0.5 -> (5, 995).

    flagd's `fractional` takes integer relative weights, so a fractional percentage is scaled
    by the power of ten that makes it whole.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight {weight} is outside [0, 100]")
    exact = Decimal(str(weight)).normalize()
    exponent = exact.as_tuple().exponent
    scale = 10 ** max(0, -exponent) if isinstance(exponent, int) else 1
    on = int(exact * scale)
    return on, 100 * scale - on


def flag_entry(weight: float, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Our flag's entry at `weight` percent. The treatment variant comes first, so that raising
    the weight only adds users (flagd walks the buckets in order). `metadata` becomes the flag's
    flagd `metadata` (the operator keeps its owner marker there)."""
    on, off = relative_weights(weight)
    entry: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {ON: True, OFF: False},
        "defaultVariant": OFF,
        "targeting": {"fractional": [[ON, on], [OFF, off]]},
    }
    if metadata:
        entry["metadata"] = dict(metadata)
    return entry


def metadata_of(entry: Any) -> dict[str, Any] | None:
    """A flag entry's flagd `metadata` object, if it has one."""
    metadata = entry.get("metadata") if isinstance(entry, dict) else None
    return metadata if isinstance(metadata, dict) else None


def weight_of(entry: Any) -> float | None:
    """The percentage a flag entry exposes, read back (None when it is not one of ours)."""
    if not isinstance(entry, dict):
        return None
    if entry.get("state") == "DISABLED":
        return 0.0
    if not entry.get("targeting"):
        # No split: everyone gets the default variant. A person switching the flag by hand often
        # leaves just that; reading it as "no entry" (0%) would take `on` for everyone as a switch-off.
        default = entry.get("defaultVariant")
        return {ON: 100.0, OFF: 0.0}.get(default) if isinstance(default, str) else None
    try:
        buckets = entry["targeting"]["fractional"]
        weights = {str(b[0]): float(b[1]) for b in buckets}
        total = sum(weights.values())
        return 0.0 if total == 0 else round(100 * weights.get(ON, 0.0) / total, 6)
    except (KeyError, TypeError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Span:
    """Where a JSON value sits in a text: text[start:end]."""

    start: int
    end: int


_decoder = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _object_members(text: str, start: int) -> tuple[dict[str, Span], int]:
    """The member spans of the JSON object that begins at `start`, and the index of its `}`."""
    if start >= len(text) or text[start] != "{":
        raise InvalidDocument(f"expected a JSON object at character {start}")
    members: dict[str, Span] = {}
    pos = _skip(text, start + 1)
    if pos < len(text) and text[pos] == "}":
        return members, pos
    while True:
        if pos >= len(text) or text[pos] != '"':
            raise InvalidDocument(f"expected a member name at character {pos}")
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] != ":":
            raise InvalidDocument(f"expected ':' at character {pos}")
        value_start = _skip(text, pos + 1)
        _, value_end = _decoder.raw_decode(text, value_start)
        members[key] = Span(value_start, value_end)
        pos = _skip(text, value_end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "}":
            return members, pos
        raise InvalidDocument(f"expected ',' or '}}' at character {pos}")


def _indent_before(text: str, pos: int) -> str:
    """The run of spaces that starts the line holding `pos`."""
    line_start = text.rfind("\n", 0, pos) + 1
    indent = ""
    for char in text[line_start:]:
        if char not in " \t":
            break
        indent += char
    return indent


def _render(value: Any, indent: str, step: str) -> str:
    """An object over several lines, one member a line, each member's value kept on one line."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    inner = indent + step
    lines = [f"{inner}{json.dumps(k)}: {_render(v, inner, step) if k == 'flags' else json.dumps(v)}"
             for k, v in value.items()]
    return "{\n" + ",\n".join(lines) + "\n" + indent + "}"


def _insert_member(text: str, members: dict[str, Span], close: int, key: str, value: Any) -> str:
    """Add `"key": value` as the last member of the object whose `}` is at `close`."""
    rendered_key = json.dumps(key)
    multiline = "\n" in text[: close + 1] and bool(members)
    if multiline:
        last = max(members.values(), key=lambda s: s.end)
        indent = _indent_before(text, last.start)
        closing_indent = _indent_before(text, close)
        step = indent[len(closing_indent) :] or "  "
        body = _render(value, indent, step)
        return text[: last.end] + f",\n{indent}{rendered_key}: {body}" + text[last.end :]
    separator = ", " if members else ""
    body = json.dumps(value)
    return text[:close] + f"{separator}{rendered_key}: {body}" + text[close:]


def new_document(flag: str, weight: float, metadata: dict[str, str] | None = None) -> str:
    """A fresh flagd document holding only our flag."""
    document = {"$schema": FLAGD_SCHEMA, "flags": {flag: flag_entry(weight, metadata)}}
    return _render(document, "", "  ") + "\n"


def set_flag(text: str | None, flag: str, weight: float, metadata: dict[str, str] | None = None) -> str:
    """The document with our flag's entry at `weight`, every other byte unchanged.

    An empty or missing document becomes a fresh one. A document that is not a flagd JSON
    object raises InvalidDocument: someone else broke it, and overwriting it would lose their
    flags.
    """
    if text is None or not text.strip():
        return new_document(flag, weight, metadata)
    check_bounds(text)
    updated = _set_flag(text, flag, weight, metadata)
    size = len(updated.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidDocument(
            f"with the flag's entry it would be {size} bytes, more than the {MAX_DOCUMENT_BYTES} (1 MiB) "
            "a ConfigMap holds"
        )
    return updated


def _set_flag(text: str, flag: str, weight: float, metadata: dict[str, str] | None) -> str:
    start = _skip(text, 0)
    try:
        top, top_close = _object_members(text, start)
        if _skip(text, top_close + 1) != len(text):
            raise InvalidDocument(f"unexpected text after the JSON object at character {top_close + 1}")
        entry = flag_entry(weight, metadata)
        if "flags" not in top:
            return _insert_member(text, top, top_close, "flags", {flag: entry})
        flags_span = top["flags"]
        if text[flags_span.start] != "{":
            raise InvalidDocument('its "flags" member is not a JSON object')
        flags, flags_close = _object_members(text, flags_span.start)
        if flag not in flags:
            return _insert_member(text, flags, flags_close, flag, entry)
        current = flags[flag]
        if json.loads(text[current.start : current.end]) == entry:
            return text
        indent = _indent_before(text, current.start)
        if "\n" in text[current.start : current.end]:
            closing = _indent_before(text, flags_close)
            rendered = _render(entry, indent, indent[len(closing) :] or "  ")
        else:
            rendered = json.dumps(entry)
        return text[: current.start] + rendered + text[current.end :]
    except json.JSONDecodeError as error:
        raise InvalidDocument(f"not valid JSON: {error}") from None
    except RecursionError:  # check_bounds keeps well below the limit; never a crash loop should it not
        raise InvalidDocument("nested too deep to parse") from None


def flag_spec_flags(body: dict[str, Any]) -> dict[str, Any]:
    """`spec.flagSpec.flags` of an OpenFeature FeatureFlag object (created empty when absent)."""
    flags = body.setdefault("spec", {}).setdefault("flagSpec", {}).setdefault("flags", {})
    if not isinstance(flags, dict):
        raise InvalidDocument("spec.flagSpec.flags is not an object; left untouched")
    depth = value_depth(flags)
    if depth > MAX_DEPTH:
        raise InvalidDocument(
            f"spec.flagSpec.flags nests arrays and objects more than the {MAX_DEPTH} deep the operator "
            "handles; left untouched"
        )
    return flags


def set_flag_spec(body: dict[str, Any], flag: str, weight: float) -> dict[str, Any] | None:
    """The FeatureFlag object `body` with our flag's entry at `weight` in `spec.flagSpec.flags`
    (changed in place), or None when it already holds exactly that entry. Every other flag and
    field stays as it was. The OpenFeature operator turns `flagSpec` into flagd configuration, so
    the entry is the same as in a flagd document."""
    flags = flag_spec_flags(body)
    entry = flag_entry(weight)
    if flags.get(flag) == entry:
        return None
    flags[flag] = entry
    return body


def read_flag_weight(text: str | None, flag: str) -> float | None:
    """The weight the document gives our flag now (None: no such flag, or not ours to read)."""
    return weight_of(read_flag_entry(text, flag))


def read_flag_entry(text: str | None, flag: str) -> Any:
    """Our flag's entry in the document as parsed JSON (None: no document or no such flag)."""
    if text is None or not text.strip():
        return None
    check_bounds(text)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidDocument(f"not valid JSON: {error}") from None
    except RecursionError:  # check_bounds keeps well below the limit; never a crash loop should it not
        raise InvalidDocument("nested too deep to parse") from None
    if not isinstance(document, dict) or not isinstance(document.get("flags", {}), dict):
        raise InvalidDocument('expected a JSON object with a "flags" object')
    return document.get("flags", {}).get(flag)
