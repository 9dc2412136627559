"""Pure: when can one PromQL query grouped `by (flag)` answer many rollouts' queries exactly?

Many rollouts share a query template that differs only in `{{flag}}`:

    sum(rate(http_requests_total{flag="{{flag}}",code=~"5.."}[1m]))
      / sum(rate(http_requests_total{flag="{{flag}}"}[1m]))

For flags a, b, c one query answers all three:

    sum by (flag) (rate(http_requests_total{flag=~"a|b|c",code=~"5.."}[1m]))
      / sum by (flag) (rate(http_requests_total{flag=~"a|b|c"}[1m]))

and the series with `flag="a"` is exactly what a's own query returns. That holds only for some query
shapes, and no PromQL parser for Python is kept up on PyPI, so this module accepts a small grammar
it parses itself (tokens, not regular expressions over the text) and refuses everything else. The
rule, with the reason for each part:

1. The query (with `{{flag}}` rendered as SENTINEL and every other variable rendered) is an
   arithmetic expression: terms joined by `+ - * / % ^`, with parentheses, and NO modifier on an
   operator (`bool`, `on`, `ignoring`, `group_left/right`): between two `by (L)` aggregations the
   default one-to-one matching on all labels is matching on L alone, which pairs each flag with
   itself, as the unbatched query pairs its two one-element vectors. Comparison operators are
   refused (simple, not because they would be wrong).
2. A term is a number literal or an aggregation `sum|min|max|count ( inner )` with NO `by` /
   `without`: per group, `sum by (L)` is the plain `sum` over the group's series, and the group of
   flag F holds exactly the series a's query selects (below). `avg` is left out only to keep the
   list short; `topk`, `quantile`, `count_values`, `stddev` ... take parameters or change labels.
3. `inner` is a vector selector, or one function of a range selector:
   `rate|irate|increase|delta|idelta|deriv|*_over_time(selector[range])`. These keep every label of
   each series, so the label L survives to the aggregation. No `offset`, no `@`, no subquery
   (the range is a plain duration such as `1m30s`).
4. Every aggregation's selector holds exactly one matcher on the label L, and it is `L="SENTINEL"`
   (`=`, the whole value), and no other matcher on L. SENTINEL appears nowhere else. Selecting
   `L=~"a|b|c"` then picks the union of the flags' series, and each series belongs to exactly one
   flag's group. A selector without the L matcher (a shared denominator) is refused: grouped by L it
   would be split by flag, which the unbatched query does not do.
5. One more term: `( expression or vector(N) )`, parenthesized, N a number, no modifier on `or`
   (how a query counts a missing error series as zero, docs/metric-templates.md). Per flag F, the
   unbatched `(x or vector(N))` is x's value, else N. Grouped, `vector(N)` becomes one
   `label_replace(vector(N), "L", "F", "", "")` per flag, joined by `or`: a series {L="F"} = N
   for each flag, which `or` adds exactly for the flags whose x has no series, so that each flag's
   group is again x's value, else N.
6. Flag values are joined into the regular expression only when they are `[A-Za-z0-9_.:-]+`
   (`.` escaped; nothing else needs escaping); any other flag falls back to its own query.

Empty answers agree too: a flag without series makes its own query return an empty vector
(`sum` of nothing), and the grouped answer has no series for it: NoData both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTINEL = "__featurerollout_flag_placeholder__"

AGGREGATIONS = frozenset({"sum", "min", "max", "count"})
RANGE_FUNCTIONS = frozenset({
    "rate", "irate", "increase", "delta", "idelta", "deriv",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "present_over_time",
})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^"})
SAFE_FLAG = re.compile(r"[A-Za-z0-9_.:-]+")

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<duration>\[(?:\d+(?:ms|[smhdwy]))+\])
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<matchop>=~|!~|!=)
    | (?P<op>==|>=|<=|[-+*/%^=<>(){},@])
    )""",
    re.VERBOSE,
)


class NotBatchable(ValueError):
    """The query is outside the grammar above: it is run on its own, once per rollout."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(query: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(query):
        if query[position:].strip() == "":
            break
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            raise NotBatchable(f"cannot read the query at {query[position:position + 20]!r}")
        kind = match.lastgroup or ""
        out.append(_Token(kind, match.group(kind), match.start(kind), match.end(kind)))
        position = match.end()
    return out


@dataclass(frozen=True)
class Shape:
    """A batchable query: where to insert `by (L)` and where to put the flags' regular expression."""

    query: str
    label: str
    by_positions: tuple[int, ...]  # right after each aggregation's name
    matcher_spans: tuple[tuple[int, int], ...]  # each `L="SENTINEL"` matcher, to become `L=~"a|b"`
    # each `vector(N)` after `or` (rule 6): its span and N, to become one series per flag
    defaults: tuple[tuple[int, int, str], ...] = ()

    def grouped(self, flags: list[str]) -> str:
        """The one query that answers every flag in `flags` (each SAFE_FLAG), grouped by the label."""
        regex = "|".join(flag.replace(".", "\\\\.") for flag in sorted(set(flags)))
        edits = [(p, p, f" by ({self.label}) ") for p in self.by_positions]
        edits += [(a, b, f'{self.label}=~"{regex}"') for a, b in self.matcher_spans]
        for a, b, number in self.defaults:
            each = [f'label_replace(vector({number}), "{self.label}", "{flag}", "", "")' for flag in sorted(set(flags))]
            edits.append((a, b, "(" + " or ".join(each) + ")"))
        text = self.query
        for start, end, insert in sorted(edits, reverse=True):
            text = text[:start] + insert + text[end:]
        return text


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokens(query)
        self.index = 0
        self.label: str | None = None
        self.by_positions: list[int] = []
        self.matcher_spans: list[tuple[int, int]] = []
        self.defaults: list[tuple[int, int, str]] = []

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> _Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text) or (kind is not None and token.kind != kind):
            raise NotBatchable(f"expected {text or kind} at token {self.index}")
        self.index += 1
        return token

    def parse(self) -> Shape:
        self.expression()
        if self.peek() is not None:
            raise NotBatchable(f"unexpected {self.peek()!r}")
        if not self.by_positions or self.label is None:
            raise NotBatchable("no aggregation over the flag's series")
        if self.query.count(SENTINEL) != len(self.matcher_spans):
            raise NotBatchable("{{flag}} is used outside a label matcher")
        return Shape(self.query, self.label, tuple(self.by_positions), tuple(self.matcher_spans),
                     tuple(self.defaults))

    def expression(self) -> None:
        self.term()
        while (token := self.peek()) is not None and token.kind == "op" and token.text in ARITHMETIC:
            self.index += 1
            following = self.peek()
            if following is not None and following.kind == "name" and following.text in (
                "bool", "on", "ignoring", "group_left", "group_right"
            ):
                raise NotBatchable(f"operator modifier {following.text!r}")
            self.term()

    def term(self) -> None:
        token = self.peek()
        if token is None:
            raise NotBatchable("the query ends too early")
        if token.kind == "number":
            self.index += 1
            return
        if token.text == "(":
            self.index += 1
            self.expression()
            following = self.peek()
            if following is not None and following.kind == "name" and following.text == "or":
                self.index += 1  # rule 6: `(x or vector(N))`
                start = self.take("vector")
                self.take("(")
                number = self.take(kind="number")
                end = self.take(")")
                self.defaults.append((start.start, end.end, number.text))
            self.take(")")
            return
        if token.kind == "name" and token.text in AGGREGATIONS:
            self.index += 1
            self.take("(")  # a `by`/`without` before or after the parentheses is refused here or below
            self.by_positions.append(token.end)
            self.inner()
            self.take(")")
            following = self.peek()
            if following is not None and following.kind == "name" and following.text != "or":  # rule 6's `or`
                raise NotBatchable(f"{following.text!r} after an aggregation")
            return
        raise NotBatchable(f"{token.text!r} is not a batchable term")

    def inner(self) -> None:
        token = self.peek()
        if token is not None and token.kind == "name" and token.text in RANGE_FUNCTIONS:
            self.index += 1
            self.take("(")
            self.selector()
            self.take(kind="duration")
            self.take(")")
            return
        self.selector()

    def selector(self) -> None:
        token = self.peek()
        if token is not None and token.kind == "name":
            if token.text in AGGREGATIONS or token.text in RANGE_FUNCTIONS or token.text in ("by", "without"):
                raise NotBatchable(f"{token.text!r} where a selector was expected")
            self.index += 1
        self.take("{")
        found = 0
        while (token := self.peek()) is not None and token.text != "}":
            name = self.take(kind="name")
            operator = self.take()
            value = self.take(kind="string")
            if SENTINEL in value.text:
                if operator.text != "=" or value.text[1:-1] != SENTINEL:
                    raise NotBatchable("{{flag}} must be a whole `=` matcher's value")
                if self.label is not None and self.label != name.text:
                    raise NotBatchable("{{flag}} is matched on two different labels")
                self.label = name.text
                self.matcher_spans.append((name.start, value.end))
                found += 1
            elif self.label is not None and name.text == self.label:
                raise NotBatchable(f"a second matcher on {name.text!r}")
            if (separator := self.peek()) is not None and separator.text == ",":
                self.index += 1
        self.take("}")
        if found != 1:
            raise NotBatchable("each selector must match {{flag}} exactly once")
        following = self.peek()
        if following is not None and following.kind == "name" and following.text == "offset":
            raise NotBatchable("offset")
        if following is not None and following.text == "@":
            raise NotBatchable("@")


def shape_of(query: str) -> Shape:
    """The batchable shape of `query` (rendered with SENTINEL for `{{flag}}`); raises NotBatchable."""
    if SENTINEL not in query:
        raise NotBatchable("the query does not use {{flag}}")
    parser = _Parser(query)
    shape = parser.parse()
    # A matcher on L before the sentinel's matcher in the same selector is caught here.
    for start, _end in shape.matcher_spans:
        selector_start = query.rfind("{", 0, start)
        selector_end = query.find("}", start)
        inside = query[selector_start:selector_end]
        if len(re.findall(rf"(?<![A-Za-z0-9_:]){re.escape(shape.label)}\s*(=~|!~|!=|=)", inside)) != 1:
            raise NotBatchable(f"a second matcher on {shape.label!r}")
    return shape


def batchable_flag(flag: str) -> bool:
    """Whether `flag` can go into the grouped query's regular expression as it is."""
    return SAFE_FLAG.fullmatch(flag) is not None
