"""Pure: why a query came to NoData, told in terms of its parts, with the fix.

A query such as `errors / total` returns an empty vector when either side has no series, and the
two causes want different fixes: an app instrumented with a client library creates its error
series only at the first error, so a perfect variant has no `code="500"` series at all (the fix:
`(errors) or vector(0)`), while a missing total means no request was counted, or the selector does
not match the app's labels. So when a whole query is NoData, the provider asks its top-level
operands once more, separately (one extra round, only on NoData), and `explain` turns the answers
into the status message.

The split is by text, not a full PromQL parser (none is kept up for Python): at depth 0 (outside
parentheses, braces, brackets and strings) it finds the binary operators of the lowest precedence
present and cuts there. It never has to be right for every query: when it finds nothing to cut,
or a part is a number, it asks nothing and the plain message stays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from featurerollout.core.measurement import Measurement, MeasurementKind

# PromQL's binary operators, lowest precedence first.
_PRECEDENCE: tuple[frozenset[str], ...] = (
    frozenset({"or"}),
    frozenset({"and", "unless"}),
    frozenset({"==", "!=", "<=", "<", ">=", ">"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%", "atan2"}),
    frozenset({"^"}),
)
_WORD_OPERATORS = frozenset({"or", "and", "unless", "atan2"})
# What may follow a binary operator and belongs to it, not to the right operand.
_MODIFIER = re.compile(r"\s*(?:bool\b|(?:on|ignoring|group_left|group_right)\s*(?:\([^()]*\))?)")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:Inf|NaN)", re.IGNORECASE)
MAX_PARTS = 4
SHOWN = 160  # characters of a part's text in a message


@dataclass(frozen=True)
class Split:
    """A query cut at its top-level operators: `parts[i] operators[i] parts[i+1] ...`."""

    parts: tuple[str, ...]
    operators: tuple[str, ...]


def _strip_outer(text: str) -> str:
    """`(x)` -> `x` while the parentheses enclose the whole text."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _depth_zero_closes_at_end(text):
        text = text[1:-1].strip()
    return text


def _depth_zero_closes_at_end(text: str) -> bool:
    depth = 0
    quote = ""
    for index, char in enumerate(text):
        if quote:
            if char == "\\":
                continue
            if char == quote:
                quote = ""
            continue
        if char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0 and index != len(text) - 1:
                return False
    return True


def _top_level_operators(text: str) -> list[tuple[int, int, str]]:
    """(start, end, operator) of each binary operator outside any brackets or strings."""
    found: list[tuple[int, int, str]] = []
    depth, index, quote = 0, 0, ""
    previous_is_operand = False  # a `-`/`+` with no operand before it is a sign, not an operator
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = ""
            index += 1
            continue
        if char in "\"'`":
            quote, previous_is_operand = char, True
            index += 1
            continue
        if char in "([{":
            depth += 1
            index += 1
            continue
        if char in ")]}":
            depth -= 1
            previous_is_operand = True
            index += 1
            continue
        if char.isspace():
            index += 1
            continue
        word = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", text[index:])
        if word:
            name = word.group(0)
            if depth == 0 and name in _WORD_OPERATORS and previous_is_operand:
                found.append((index, index + len(name), name))
                previous_is_operand = False
            else:
                previous_is_operand = True
            index += len(name)
            continue
        number = re.match(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text[index:])
        if number:
            previous_is_operand = True
            index += len(number.group(0))
            continue
        symbol = next((s for s in ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "^")
                       if text.startswith(s, index)), None)
        if symbol is not None:
            if depth == 0 and previous_is_operand:
                found.append((index, index + len(symbol), symbol))
            previous_is_operand = False
            index += len(symbol)
            continue
        index += 1
    return found


def split(query: str) -> Split | None:
    """The query's top-level operands (at most MAX_PARTS), or None when there is nothing to cut."""
    text = _strip_outer(query)
    operators = _top_level_operators(text)
    for level in _PRECEDENCE:
        cuts = [(start, end, op) for start, end, op in operators if op in level]
        if not cuts:
            continue
        if len(cuts) + 1 > MAX_PARTS:
            return None
        parts: list[str] = []
        position = 0
        for start, end, _op in cuts:
            parts.append(text[position:start].strip())
            modifier = _MODIFIER.match(text, end)
            position = modifier.end() if modifier and modifier.group(0).strip() else end
        parts.append(text[position:].strip())
        if any(not part for part in parts):
            return None
        return Split(tuple(parts), tuple(op for _s, _e, op in cuts))
    return None


def is_number(part: str) -> bool:
    """A literal (nothing to ask Prometheus)."""
    return _NUMBER.fullmatch(_strip_outer(part)) is not None


def parts_to_ask(query: str) -> list[str]:
    """The operands worth asking separately when `query` is NoData (none: nothing to explain)."""
    cut = split(query)
    if cut is None:
        return []
    return list(dict.fromkeys(part for part in cut.parts if not is_number(part)))


def _flat(part: str) -> str:
    flat = " ".join(part.split())
    return flat if len(flat) <= SHOWN else flat[:SHOWN - 3] + "..."


def _shown(part: str) -> str:
    flat = " ".join(part.split())
    return f"`{flat}`" if len(flat) <= SHOWN else f"`{flat[:SHOWN - 3]}...`"


def explain(query: str, whole: Measurement, answers: Mapping[str, Measurement]) -> str:
    """The NoData detail for `query`, given what its operands answered (parts_to_ask's, each asked
    on its own). Without answers, the plain detail."""
    cut = split(query)
    if cut is None or not answers:
        return whole.detail
    empty = [p for p in cut.parts if p in answers and answers[p].kind is MeasurementKind.NO_DATA]
    valued = [p for p in cut.parts if p in answers and answers[p].kind is MeasurementKind.VALUE]
    if any(answers[p].kind is MeasurementKind.ERROR for p in cut.parts if p in answers):
        return whole.detail
    base = whole.detail
    if empty and valued:
        named = "; ".join(f"{_shown(p)} returned {'NaN' if 'NaN' in answers[p].detail else 'no series'}"
                          for p in empty)
        advice = ""
        divided = "/" in cut.operators and len(cut.parts) == 2
        if divided and cut.parts[0] in empty:
            advice = (": a counter is created at its first increment, so an app that has not failed yet has no "
                      "error series; count it as zero errors: `(" + _flat(cut.parts[0]) + " or vector(0)) / ...` "
                      "(docs/metric-templates.md)")
        elif divided and cut.parts[1] in empty:
            advice = (": nothing was counted in the window: no traffic yet, a rate window too short for the "
                      "scrape interval (at least 4 scrapes), or labels that do not match the app's")
        others = ", ".join(_shown(p) for p in valued)
        return f"{base}: {named} ({others} has data){advice}"
    if empty and not valued:
        return (f"{base}: no part of it has data ({', '.join(_shown(p) for p in empty)}): is the app scraped, "
                "has it served traffic in the window, does the rate window hold at least 4 scrapes, and do the "
                "labels match its series?")
    if valued and not empty:
        if "NaN" in base and "/" in cut.operators:
            denominator = cut.parts[-1]
            if cut.operators[-1] == "/" and denominator in valued and answers[denominator].value == 0:
                return (f"{base}: the divisor {_shown(denominator)} is 0: nothing was counted in the window "
                        "(no traffic, or a rate window too short for the scrape interval)")
        return (f"{base}: each part has data on its own but they share no series (check the labels on "
                "both sides: aggregate each with sum(...), or match them with on())")
    return base


def explained(query: str, whole: Measurement, answers: Sequence[tuple[str, Measurement]]) -> Measurement:
    """`whole` (NoData) with explain's detail."""
    return Measurement.no_data(explain(query, whole, dict(answers)))
