"""Limits, Go-style durations, name patterns and the base model shared by every kind of the API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

# --- limits shared with the CRD (a real kube-apiserver refuses CEL rules whose cost is unbounded)

MAX_STAGES = 20
MAX_METRICS = 20
MAX_QUERY_LENGTH = 10_000
MAX_NAME_LENGTH = 253
MAX_FLAG_LENGTH = 253
MAX_HEADERS = 20
MAX_TEMPLATE_ARGS = 20
MAX_ARG_VALUE_LENGTH = 1024

# --- Go-style durations ------------------------------------------------------------------------

# One or more <number><unit> groups, as Go's time.ParseDuration accepts (a bare "0" too).
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (`30s`, `5m`, `1h30m`, `168h`, `1.5h`) into a timedelta."""
    if not _DURATION_RE.match(text):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, e.g. 30s, 5m, 1h30m or 168h"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Format a timedelta the way Go prints durations, rounded to whole seconds (`1h2m3s`)."""
    total = max(0, round(delta.total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# The pattern goes to the CRD; the models check with parse_duration, whose message is friendlier.
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(max_length=64, json_schema_extra={"pattern": DURATION_PATTERN}),
]

# DNS-1123 subdomain: what Kubernetes accepts as an object name.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=OBJECT_NAME_PATTERN)]
# A metric name doubles as a Prometheus label value and a status key: a DNS-1123 label.
METRIC_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def names_unique(items: Sequence[Any], message: str) -> None:
    """Refuse a list in which two items have one `name` (metrics, gates, template args), naming it."""
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{message}: {item.name!r} appears more than once")
        seen.add(item.name)


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the API server stores it (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
