"""The exact count of a counter over a stage, from raw samples (stats/counters.py), and which count
templates the operator counts exactly (metrics/compare.py). Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from featurerollout.core.measurement import MeasurementKind
from featurerollout.edges.metrics.compare import Summary, counter_selector, matrix_count, series_selector, summary
from featurerollout.stats.counters import series_increase, stage_increase

START = 100.0


def test_a_series_counts_from_its_last_sample_at_or_before_the_start() -> None:
    assert series_increase([(85, 10), (100, 12), (115, 20), (130, 26)], START) == 14


def test_a_series_created_mid_stage_counts_from_zero() -> None:
    # A client library creates the counter at its first increment: its first value is what it counted.
    assert series_increase([(115, 3), (130, 5)], START) == 5


def test_a_reset_counts_what_follows_from_zero() -> None:
    assert series_increase([(90, 50), (115, 60), (130, 4), (145, 9)], START) == 10 + 4 + 5


def test_samples_before_the_start_only_give_the_baseline_and_order_does_not_matter() -> None:
    assert series_increase([(145, 9), (60, 1), (90, 50), (130, 4), (115, 60)], START) == 19
    assert series_increase([(60, 1), (90, 5)], START) == 0
    assert stage_increase([[(90, 5), (115, 7)], [(120, 2)]], START) == 4


@pytest.mark.parametrize(("template", "selector"), [
    ('http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}',
     'http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}'),
    ("http_requests_total", "http_requests_total"),
    ('{__name__="x",a="}{"}', '{__name__="x",a="}{"}'),
    ('sum(increase(http_requests_total{flag="{{flag}}"}[{{window}}]))', 'http_requests_total{flag="{{flag}}"}'),
    (' sum ( increase( x{a="b"} [ {{ window }} ] ) ) ', 'x{a="b"}'),
    ('sum(increase(x{a="b"}[5m]))', None),
    ('sum(increase(x{a="b"}[{{window}}])) * 2', None),
    ("sum(x)", None),
    ('x{a="b"} + y', None),
    ("x[5m]", None),
])
def test_which_counts_are_counted_exactly(template: str, selector: str | None) -> None:
    assert counter_selector(template) == selector


def test_a_range_answer_is_counted_and_anything_else_refused() -> None:
    start = datetime.fromtimestamp(START, UTC)
    answer = [{"metric": {"code": "200"}, "values": [[90, "5"], [115, "7"]]},
              {"metric": {"code": "500"}, "values": [[120, "2"]]}]
    assert matrix_count(answer, start).value == 4
    assert matrix_count([], start).kind == MeasurementKind.NO_DATA
    refused = matrix_count([{"metric": {}, "value": [1, "3"]}], start)
    assert refused.kind == MeasurementKind.ERROR and "raw samples" in refused.detail


def test_a_summary_answer_is_read_by_its_rows_and_anything_else_refused() -> None:
    answer = [{"metric": {"__count__": "exact"}, "value": [1, "120"]},
              {"metric": {"__count__": "samples"}, "value": [1, "40"]},
              {"metric": {"__count__": "all"}, "value": [1, "400"]},
              {"metric": {"__name__": "x", "pod": "b"}, "value": [1, "7"]},
              {"metric": {"__name__": "x", "pod": "a"}, "value": [1, "9"]}]
    assert summary(answer) == Summary(120.0, 40, 400, ((("__name__", "x"), ("pod", "a")),
                                                     (("__name__", "x"), ("pod", "b"))))
    # Every series reset: no `exact` row, nothing counted but what the raw samples will say.
    only_resets = [row for row in answer if row["metric"].get("__count__") != "exact"]
    assert summary(only_resets) == Summary(0.0, 40, 400, (
        (("__name__", "x"), ("pod", "a")), (("__name__", "x"), ("pod", "b"))))
    nothing = summary([])
    assert not isinstance(nothing, Summary) and nothing.kind == MeasurementKind.NO_DATA
    refused = summary([{"metric": {}, "values": [[1, "3"]]}])
    assert not isinstance(refused, Summary) and refused.kind == MeasurementKind.ERROR


def test_a_series_selector_writes_each_label_as_a_promql_string() -> None:
    labels = (("__name__", "x_total"), ("path", 'a"b\\c\nd é'))
    assert series_selector(labels) == '{__name__="x_total",path="a\\"b\\\\c\\nd é"}'
