"""The chart's Grafana dashboard, read as Grafana reads it: every PromQL expression in it (panels,
annotations, template variables), and Grafana's template variables replaced by concrete values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cluster import REPO

DASHBOARD = REPO / "charts" / "featurerollout" / "dashboards" / "featurerollout.json"

# `label_values(SELECTOR, LABEL)`: a Grafana variable query, not PromQL; Grafana asks Prometheus for
# the series SELECTOR matches and offers the values of LABEL.
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$", re.DOTALL)


@dataclass(frozen=True)
class Expression:
    """One query of the dashboard: where it is (for messages) and its text as written."""

    where: str
    expr: str
    label: str | None = None  # for a `label_values` variable: the label whose values it offers


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: Mapping[str, Any]) -> list[Expression]:
    """Every PromQL expression: panel targets, annotations, and the selectors of variable queries."""
    found: list[Expression] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append(Expression(f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found.append(Expression(f"annotation {annotation['name']!r}", annotation["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        if match is None:
            raise ValueError(f"variable {variable['name']!r}: only label_values(SELECTOR, LABEL) is understood")
        found.append(Expression(f"variable {variable['name']!r}", match["selector"], match["label"]))
    return found


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace `$name` and `${name}` by concrete values, as Grafana does before it sends a query;
    an unknown variable is an error (a typo would otherwise reach Prometheus as text)."""
    def one(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in values:
            raise KeyError(f"no value for the template variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$(?:\{(?P<braced>\w+)\}|(?P<bare>\w+))", one, expr)
