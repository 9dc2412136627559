"""Label and field selectors, as `?labelSelector=` and `?fieldSelector=` take them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featurerollout_sandbox.errors import ApiError

Json = dict[str, Any]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether `labels` satisfy this term (kube-apiserver's semantics: != and notin match absence)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms: list[str] = []
    depth = 0
    current = ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_label_selector(selector: str) -> list[Requirement]:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k`; a malformed one is a 400 BadRequest."""
    requirements: list[Requirement] = []
    for term in _split_terms(selector):
        eq = _EQ_RE.match(term)
        if eq:
            op = "=" if eq.group(2) in ("=", "==") else "!="
            requirements.append(Requirement(eq.group(1), op, frozenset([eq.group(3)])))
            continue
        st = _SET_RE.match(term)
        if st and not (st.group(1) and st.group(3)):
            key = st.group(2)
            if st.group(3):
                values = frozenset(v.strip() for v in st.group(4).split(",") if v.strip())
                requirements.append(Requirement(key, st.group(3), values))
            else:
                requirements.append(Requirement(key, "!exists" if st.group(1) else "exists"))
            continue
        raise ApiError(400, f"unable to parse requirement: invalid label selector term {term.strip()!r}")
    return requirements


def label_matcher(selector: str | None) -> Callable[[Json], bool]:
    """A predicate on objects for a `labelSelector` query parameter."""
    if not selector:
        return lambda obj: True
    requirements = parse_label_selector(selector)

    def matches(obj: Json) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


def _field_value(obj: Json, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


# kube-apiserver supports a fixed set of field labels per kind; these are the ones the sandbox serves.
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
EXTRA_FIELDS: dict[str, set[str]] = {
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
    },
    "secrets": {"type"},
    "namespaces": {"status.phase"},
}


def field_matcher(selector: str | None, plural: str) -> Callable[[Json], bool]:
    """A predicate for `fieldSelector` (=, ==, != on the field labels the resource supports)."""
    if not selector:
        return lambda obj: True
    allowed = COMMON_FIELDS | EXTRA_FIELDS.get(plural, set())
    terms: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        m = _EQ_RE.match(term)
        if not m:
            raise ApiError(400, f"invalid field selector term {term.strip()!r}: use field=value or field!=value")
        key, op, value = m.groups()
        if key not in allowed:
            raise ApiError(400, f'field label not supported: {key}')
        terms.append((key, op != "!=", value))

    def matches(obj: Json) -> bool:
        for key, equal, value in terms:
            actual = _field_value(obj, key)
            if key == "source" and plural == "events":
                actual = _field_value(obj, "source.component")
            if (actual == value) != equal:
                return False
        return True

    return matches
