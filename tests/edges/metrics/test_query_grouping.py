"""Pure: which queries one grouped query can answer for many flags, and what a round sends."""

from __future__ import annotations

import pytest

from featurerollout.edges.metrics.batcher import Ask, plan_round
from featurerollout.edges.metrics.grouping import SENTINEL, NotBatchable, batchable_flag, shape_of
from featurerollout.edges.metrics.queries import render_query

S = SENTINEL


def rendered(template: str) -> str:
    return render_query(template, flag=S, name="r", namespace="ns", interval="10s")


RATIO = ('sum(rate(http_requests_total{flag="{{flag}}",code=~"5.."}[{{interval}}]))'
         ' / sum(rate(http_requests_total{flag="{{flag}}"}[{{interval}}]))')


@pytest.mark.parametrize(("template", "grouped"), [
    ('sum(errors{flag="{{flag}}"})', 'sum by (flag) (errors{flag=~"a|b"})'),
    ('max(max_over_time(latency{job="x", flag="{{flag}}"}[1m]))',
     'max by (flag) (max_over_time(latency{job="x", flag=~"a|b"}[1m]))'),
    (RATIO, 'sum by (flag) (rate(http_requests_total{flag=~"a|b",code=~"5.."}[10s]))'
            ' / sum by (flag) (rate(http_requests_total{flag=~"a|b"}[10s]))'),
    ('100 * (count(up{feature="{{flag}}"}) - 1)', '100 * (count by (feature) (up{feature=~"a|b"}) - 1)'),
    ('(sum(e{flag="{{flag}}"}) or vector(0)) / sum(t{flag="{{flag}}"})',
     '(sum by (flag) (e{flag=~"a|b"}) or (label_replace(vector(0), "flag", "a", "", "") or '
     'label_replace(vector(0), "flag", "b", "", ""))) / sum by (flag) (t{flag=~"a|b"})'),
])
def test_accepted_shapes_and_their_grouped_query(template: str, grouped: str) -> None:
    shape = shape_of(rendered(template))
    assert shape.grouped(["b", "a", "a"]) == grouped


def test_dots_in_a_flag_are_escaped_in_the_regular_expression() -> None:
    assert shape_of(f'sum(x{{flag="{S}"}})').grouped(["a.b"]) == 'sum by (flag) (x{flag=~"a\\\\.b"})'


@pytest.mark.parametrize("template", [
    'sum by (code) (errors{flag="{{flag}}"})',          # grouped by another label already
    'sum(errors{flag="{{flag}}"}) by (code)',
    'sum without (code) (errors{flag="{{flag}}"})',
    'avg(errors{flag="{{flag}}"})',                    # not on the list
    'topk(1, errors{flag="{{flag}}"})',
    'errors{flag="{{flag}}"}',                         # no aggregation: the series may be several
    'sum(errors{flag=~"{{flag}}"})',                   # a regex matcher: the value may match others
    'sum(errors{flag="{{flag}}-v2"})',                 # not the whole value
    'sum(errors{flag="{{flag}}", flag!="x"})',         # a second matcher on the label
    'sum(errors{flag!="x", flag="{{flag}}"})',
    'sum(errors{flag="{{flag}}"}) / sum(total)',       # a shared denominator would be split by flag
    'sum(errors{flag="{{flag}}"}) / on() sum(total{flag="{{flag}}"})',
    'sum(errors{flag="{{flag}}"}) > bool 1',
    'sum(errors{flag="{{flag}}"}) > 1',
    'sum(errors{flag="{{flag}}"} offset 5m)',
    'sum(rate(errors{flag="{{flag}}"}[1m] offset 5m))',
    'sum(rate(errors{flag="{{flag}}"}[5m:1m]))',       # a subquery
    'sum(label_replace(errors{flag="{{flag}}"}, "flag", "x", "", ""))',
    'sum(errors{flag="{{flag}}"}) + sum(errors{team="{{flag}}"})',  # two different labels
    'sum(errors{flag="{{flag}}", name="{{flag}}"})',   # the flag in two matchers
    '-sum(errors{flag="{{flag}}"})',
    'sum(errors{flag="x"})',                           # no {{flag}} at all
    'sum(absent(errors{flag="{{flag}}"}))',
    'sum(errors{flag="{{flag}}"}) or vector(0)',       # `or` outside parentheses
    '(sum(errors{flag="{{flag}}"}) or on() vector(0))',  # a modifier on `or`
    '(sum(errors{flag="{{flag}}"}) or sum(other{flag="{{flag}}"}))',  # only `or vector(N)`
])
def test_refused_shapes(template: str) -> None:
    with pytest.raises(NotBatchable):
        shape_of(rendered(template))


def test_safe_flags() -> None:
    assert batchable_flag("new-checkout_v2.1")
    assert not batchable_flag('a"b') and not batchable_flag("a|b") and not batchable_flag("") \
        and not batchable_flag("a b") and not batchable_flag("a*")


def test_a_round_sends_identical_queries_once_and_one_grouped_query_per_shape() -> None:
    shape = rendered('sum(x{flag="{{flag}}"})')
    asks = [
        Ask('sum(x{flag="a"})', shape, "a"),
        Ask('sum(x{flag="b"})', shape, "b"),
        Ask('sum(x{flag="b"})', shape, "b"),           # the same flag in two namespaces
        Ask("vector(1)"), Ask("vector(1)"),            # identical plain queries
        Ask('sum(y{flag="c"})', rendered('sum(y{flag="{{flag}}"})'), "c"),  # its shape has one flag
        Ask('sum(x{flag="d|e"})', shape, "d|e"),       # unsafe flag: its own query
        Ask('avg(z{flag="a"})', rendered('avg(z{flag="{{flag}}"})'), "a"),   # refused shape
        Ask('avg(z{flag="b"})', rendered('avg(z{flag="{{flag}}"})'), "b"),
    ]
    plan = plan_round(asks)
    assert [(s.query, flags) for s, flags in plan.grouped] == [(shape, ("a", "b"))]
    assert sorted(plan.plain) == sorted(['vector(1)', 'sum(y{flag="c"})', 'sum(x{flag="d|e"})',
                                         'avg(z{flag="a"})', 'avg(z{flag="b"})'])
