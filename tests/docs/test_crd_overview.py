"""The by-topic CRD overview (docs/reference/crd-overview.md) is hand-written for reading; it may not
name a field the CRDs do not have. Every field path in the first column of its tables must resolve
in the schema rendered from the models (the same one as crds/ and docs/reference/crd.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from featurerollout.api.crd import CLUSTER_METRIC_TEMPLATE, FEATURE_ROLLOUT, render_crd
from tests.support.paths import REPO

OVERVIEW = REPO / "docs" / "reference" / "crd-overview.md"
ROW = re.compile(r"^\| (`[^|]+?) \|")


def schema_of(kind: Any) -> dict[str, Any]:
    schema: dict[str, Any] = render_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def resolves(schema: dict[str, Any], path: str) -> bool:
    """`spec.analysis.metrics[].name` in an OpenAPI schema: properties, and `[]` for items."""
    node = schema
    for part in path.split("."):
        name, items = part.removesuffix("[]"), part.endswith("[]")
        properties = node.get("properties", {})
        if name not in properties:
            return False
        node = properties[name]
        if items:
            node = node.get("items", {})
    return True


def paths_in(cell: str) -> list[str]:
    """The field paths one first-column cell names: `a.b` / `.c` (a sibling of b), `a`, `b` (two)."""
    paths: list[str] = []
    for name in re.findall(r"`([^`]+)`", cell):
        if name.startswith(".") and paths:
            name = paths[-1].rsplit(".", 1)[0] + name
        paths.append(name)
    return paths


def overview_paths() -> list[tuple[str, str]]:
    """(table, path) for every row of the overview's field tables."""
    found: list[tuple[str, str]] = []
    table = "FeatureRollout"
    for line in OVERVIEW.read_text().splitlines():
        if line.startswith("## MetricTemplate"):
            table = "MetricTemplate"
        match = ROW.match(line)
        if match:
            found += [(table, path) for path in paths_in(match.group(1))]
    return found


@pytest.mark.parametrize(("table", "path"), overview_paths(), ids=lambda v: str(v))
def test_every_field_the_overview_names_exists(table: str, path: str) -> None:
    kind = FEATURE_ROLLOUT if table == "FeatureRollout" else CLUSTER_METRIC_TEMPLATE
    assert resolves(schema_of(kind), path), f"docs/reference/crd-overview.md names {path}, which the {table} CRD lacks"


def test_the_overview_is_read_at_all() -> None:
    assert len(overview_paths()) > 40


def test_a_field_that_does_not_exist_is_caught() -> None:
    assert not resolves(schema_of(FEATURE_ROLLOUT), "spec.analysis.metrics[].maxx")
    assert resolves(schema_of(FEATURE_ROLLOUT), "spec.analysis.metrics[].max")
