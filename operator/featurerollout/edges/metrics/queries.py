"""Query variables: `{{flag}}`, `{{name}}`, `{{namespace}}` and `{{interval}}`, as Flagger offers them,
and `{{window}}`: the time since the current stage began, for counts over the whole stage so far
(what a compare metric's sequential test needs).

A metric's query is a template, so that one query can be shared between rollouts:

    sum(rate(http_requests_total{flag="{{flag}}",code=~"5.."}[{{ interval }}]))

Rendering is a pure function. An unknown variable is an error that names it, so that a typo
never reaches Prometheus as a confusing parse error.

A metric template's `{{args.NAME}}` values come from whoever writes the FeatureRollout, so they
cannot change the query's structure (docs/metric-templates.md, "How an arg is put in"):

- inside a PromQL string (`"..."` or `'...'` in the template) the value is escaped as that
  string's content (backslash, the quote, newline and carriage return), so it cannot leave its
  quotes; inside a raw string (`` `...` ``) a value holding a backtick or a newline is refused;
- outside a string (a range `[{{args.rateWindow}}]`, a factor `* {{args.scale}}`, a label name)
  the value must be one bare token: letters, digits, `_`, `.` and `:`, with an optional leading
  sign (`4m`, `0.5`, `-1`, `1e3`, `instance`); anything else is refused with an error naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta

from featurerollout.api import parse_duration

VARIABLES: tuple[str, ...] = ("flag", "name", "namespace", "interval", "window")

# `{{flag}}`, `{{ flag }}`; a dotted name is matched too, so that `{{ variables.x }}` (Flagger's
# custom variables, which this project has not got) is reported as unknown instead of left in.
_VARIABLE_RE = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")

_PROMETHEUS_UNITS: tuple[tuple[str, int], ...] = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


ARGS_PREFIX = "args."  # a metric template's `{{args.NAME}}`


def template_arguments(template: str) -> list[str]:
    """The NAMEs of the `{{args.NAME}}` placeholders a template uses, in order of first use."""
    names: list[str] = []
    for match in _VARIABLE_RE.finditer(template):
        variable = match.group(1)
        if variable.startswith(ARGS_PREFIX) and variable.removeprefix(ARGS_PREFIX) not in names:
            names.append(variable.removeprefix(ARGS_PREFIX))
    return names


class MissingTemplateArgument(ValueError):
    """A template's `{{args.NAME}}` has no value: neither the metric's args nor the template's defaults."""

    def __init__(self, argument: str) -> None:
        self.argument = argument
        super().__init__(f"no value for {{{{args.{argument}}}}}")


class UnsafeTemplateArgument(ValueError):
    """An `{{args.NAME}}` value that cannot be put where the template places it without changing the query."""

    def __init__(self, argument: str, why: str) -> None:
        self.argument = argument
        super().__init__(f"{{{{args.{argument}}}}}: {why}")


_BARE_ARG_RE = re.compile(r"[+-]?[A-Za-z0-9_.:]+")
_DOUBLE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})
_SINGLE_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r"})


def promql_string_content(value: str, quote: str = '"') -> str:
    """`value` escaped as the content of a PromQL string quoted with `quote` (`"` or `'`)."""
    return value.translate(_DOUBLE_ESCAPES if quote == '"' else _SINGLE_ESCAPES)


def placeholder_quotes(template: str) -> dict[int, str | None]:
    """Pure: for each `{{...}}` placeholder (by its start offset), the quote of the PromQL string it
    sits in (`"`, `'` or a backtick), or None outside any string. Comments (`#` to the line's end)
    count as outside."""
    found: dict[int, str | None] = {}
    quote: str | None = None
    comment = False
    pos = 0
    while pos < len(template):
        match = _VARIABLE_RE.match(template, pos)
        if match:
            found[pos] = quote
            pos = match.end()
            continue
        char = template[pos]
        if comment:
            comment = char != "\n"
        elif quote is None:
            if char in "\"'`":
                quote = char
            elif char == "#":
                comment = True
        elif char == "\\" and quote != "`":
            pos += 1  # the escaped character is part of the string
        elif char == quote:
            quote = None
        pos += 1
    return found


def _put_argument(argument: str, value: str, quote: str | None) -> str:
    """An `{{args.NAME}}` value as it may stand where the template puts it (see the module)."""
    if quote in ('"', "'"):
        return promql_string_content(value, quote)
    if quote == "`":
        if "`" in value or "\n" in value:
            raise UnsafeTemplateArgument(argument, "a value inside a `raw string` cannot hold a backtick or a newline")
        return value
    if not _BARE_ARG_RE.fullmatch(value):
        raise UnsafeTemplateArgument(
            argument,
            f"the template puts it outside a string, where a value must be one word, number or duration "
            f"(letters, digits, _ . :), not {value!r}; quote it in the template to pass any text",
        )
    return value


class UnknownQueryVariable(ValueError):
    """A template names a variable that does not exist."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        known = ", ".join("{{" + v + "}}" for v in VARIABLES)
        shown = "{{" + variable + "}}" if variable else "{{}}"
        super().__init__(f"unknown query variable {shown}: the variables are {known}")


def prometheus_duration(interval: str | timedelta) -> str:
    """Format a duration the way PromQL writes one in a range selector: `1m`, `30s`, `1h30m`, `1s500ms`.

    Accepts a Go-style string (`1m`, `90s`, `1.5m`) or a timedelta. PromQL takes no fractions, so a
    fraction becomes smaller units (`1.5m` -> `1m30s`); below a millisecond it is rounded.
    """
    delta = parse_duration(interval) if isinstance(interval, str) else interval
    millis = round(delta.total_seconds() * 1000)
    if millis <= 0:
        raise ValueError(f"interval {interval!r} must be at least 1ms to be used in a query")
    parts: list[str] = []
    for unit, size in _PROMETHEUS_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def render_query(
    template: str,
    *,
    flag: str,
    name: str,
    namespace: str,
    interval: str | timedelta,
    window: timedelta | None = None,
    args: Mapping[str, str] | None = None,
) -> str:
    """Replace `{{flag}}`, `{{name}}`, `{{namespace}}`, `{{interval}}` and `{{window}}` (spaces inside
    the braces allowed).

    `name` and `namespace` are the FeatureRollout's; `interval` is the analysis interval, rendered as
    a PromQL duration; `window` the time since the stage began, in whole seconds, at least 1s (the
    interval when not given). `args` (a metric template's) fills `{{args.NAME}}`; without it such a
placeholder is an unknown variable. Raises UnknownQueryVariable or MissingTemplateArgument (both
ValueErrors) naming the first variable that has no value, or UnsafeTemplateArgument for an arg's
value that could change the query's structure (the module says which values are put in how).
    """
    used = {match.group(1) for match in _VARIABLE_RE.finditer(template)}
    for match in _VARIABLE_RE.finditer(template):
        variable = match.group(1)
        if args is not None and variable.startswith(ARGS_PREFIX):
            if variable.removeprefix(ARGS_PREFIX) not in args:
                raise MissingTemplateArgument(variable.removeprefix(ARGS_PREFIX))
        elif variable not in VARIABLES:
            raise UnknownQueryVariable(variable)
    values: dict[str, str] = {"flag": flag, "name": name, "namespace": namespace}
    if "interval" in used:
        values["interval"] = prometheus_duration(interval)
    if "window" in used:
        span = window if window is not None else (parse_duration(interval) if isinstance(interval, str) else interval)
        # Whole seconds, rounded up, so that the window never starts after the stage did.
        values["window"] = prometheus_duration(timedelta(seconds=max(1, math.ceil(span.total_seconds()))))

    quotes = placeholder_quotes(template) if args is not None else {}

    def substitute(match: re.Match[str]) -> str:
        variable = match.group(1)
        if args is not None and variable.startswith(ARGS_PREFIX):
            # One pass over the template: an argument's value is never read as a variable.
            argument = variable.removeprefix(ARGS_PREFIX)
            return _put_argument(argument, args[argument], quotes.get(match.start()))
        return values[variable]

    return _VARIABLE_RE.sub(substitute, template)
