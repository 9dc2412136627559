"""`featurerollout list`: the pure formatting (rows, table, JSON) and the shared presentation bits."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from featurerollout.api import FeatureRolloutStatus, MetricResult, MetricStatus, Phase, parse_spec
from featurerollout.commands.listing import VERDICT_WIDTH, as_json, row, rows, table
from featurerollout.commands.presentation import human_duration, last_verdict, stage_of, target_brief

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ANALYSIS = {
    "interval": "30s",
    "prometheus": {"address": "http://prometheus:9090"},
    "metrics": [
        {"name": "error-rate", "query": "x", "max": 0.05},
        {"name": "latency", "query": "y", "min": 0.9},
    ],
}
SPEC: dict[str, Any] = {
    "flag": "new-checkout", "target": {"configMap": {"name": "feature-flags"}},
    "stages": [{"weight": 10, "duration": "5m"}, {"weight": 25, "duration": "5m"},
               {"weight": 50, "duration": "5m"}, {"weight": 100}],
    "analysis": ANALYSIS,
}


def _when(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def body(name: str, namespace: str = "shop", spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec or SPEC, "status": status}


def metric(name: str, result: str, value: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "result": result, "value": value, "evaluatedAt": _when(5), **extra}


PROGRESSING = body(
    "checkout", phase="Progressing", currentStage=1, currentWeight=25, startedAt=_when(600),
    stageStartedAt=_when(192), lastAnalysisAt=_when(5),
    metrics=[metric("error-rate", "Passed", 0.01), metric("latency", "Passed", 0.99)],
)
ROLLED_BACK = body(
    "search", phase="RolledBack", currentStage=2, currentWeight=0, startedAt=_when(900),
    stageStartedAt=_when(100), finishedAt=_when(30),
    metrics=[metric("error-rate", "Failed", 0.12, consecutiveFailures=1), metric("latency", "Passed", 0.95)],
)
PENDING = body("cart", phase="Pending")


# --- the shared bits --------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (45, "45s"), (60, "1m"), (192, "3m12s"), (3600, "1h"), (4330, "1h12m"),
    (86400 * 3 + 3600 * 4 + 59, "3d4h"), (86400 * 7, "7d"), (-5, "0s"),
])
def test_human_duration_is_exact_while_short_and_rounded_as_it_grows(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_stage_is_one_based_and_capped_at_the_last() -> None:
    spec = parse_spec(SPEC)
    assert stage_of(spec, FeatureRolloutStatus(current_stage=1)) == "2/4"
    assert stage_of(spec, FeatureRolloutStatus(current_stage=9)) == "4/4"


@pytest.mark.parametrize(("target", "text"), [
    ({"configMap": {"name": "feature-flags"}}, "configMap/feature-flags"),
    ({"featureFlag": {"name": "flags"}}, "featureFlag/flags"),
    ({"httpRoute": {"name": "shop", "rule": 1, "stableBackend": "a", "featureBackend": "b"}}, "httpRoute/shop#1"),
    ({"webhook": {"url": "https://flags.example.com:8443/api/rollouts"}}, "webhook/flags.example.com:8443"),
])
def test_target_brief_names_the_kind_and_the_object(target: dict[str, Any], text: str) -> None:
    assert target_brief(parse_spec({**SPEC, "target": target}).target) == text


def _status(*metrics: MetricStatus) -> FeatureRolloutStatus:
    return FeatureRolloutStatus(phase=Phase.PROGRESSING, metrics=list(metrics))


def test_verdict_passed_only_when_every_evaluated_metric_passed() -> None:
    spec = parse_spec(SPEC)
    assert last_verdict(spec, _status(MetricStatus(name="error-rate", result=MetricResult.PASSED, value=0.0),
                                      MetricStatus(name="latency", result=MetricResult.PASSED, value=1.0))) == "Passed"


def test_verdict_names_the_breach_with_its_value_and_budget() -> None:
    spec = parse_spec(SPEC)
    status = _status(MetricStatus(name="error-rate", result=MetricResult.FAILED, value=0.12),
                     MetricStatus(name="latency", result=MetricResult.FAILED, value=0.8))
    assert last_verdict(spec, status) == "Failed: error-rate 0.12 > 0.05, latency 0.8 < 0.9"


def test_verdict_puts_the_worst_first_and_names_each_metric() -> None:
    spec = parse_spec(SPEC)
    status = _status(MetricStatus(name="error-rate", result=MetricResult.NO_DATA),
                     MetricStatus(name="latency", result=MetricResult.ERROR, message="parse error at char 3"))
    assert last_verdict(spec, status) == "Error: latency (parse error at char 3); NoData: error-rate"


def test_no_verdict_without_analysis_or_before_the_first_evaluation() -> None:
    assert last_verdict(parse_spec({**SPEC, "analysis": None}), _status()) == "-"
    assert last_verdict(parse_spec(SPEC), _status()) == "-"
    # a metric the spec no longer has is not a verdict on this spec
    assert last_verdict(parse_spec(SPEC), _status(MetricStatus(name="gone", result=MetricResult.FAILED,
                                                                value=1.0))) == "-"


# --- rows ---------------------------------------------------------------------------------------


def test_a_progressing_rollout_shows_its_stage_and_the_time_in_it() -> None:
    r = row(PROGRESSING, NOW)
    assert (r.namespace, r.name, r.phase, r.weight, r.stage) == ("shop", "checkout", "Progressing", 25, "2/4")
    assert r.in_stage == timedelta(seconds=192)
    assert r.verdict == "Passed"
    assert (r.flag, r.target) == ("new-checkout", "configMap/feature-flags")
    # the next analysis (every 30s, last 5s ago) comes before the stage's end (5m, 192s in)
    assert r.next_check == NOW + timedelta(seconds=25)


def test_a_finished_rollout_has_no_time_in_stage_and_no_next_check() -> None:
    r = row(ROLLED_BACK, NOW)
    assert (r.phase, r.weight, r.stage, r.in_stage, r.next_check) == ("RolledBack", 0, "3/4", None, None)
    assert r.verdict == "Failed: error-rate 0.12 > 0.05"


def test_a_pending_rollout_has_no_stage_yet() -> None:
    r = row(PENDING, NOW)
    assert (r.phase, r.stage, r.in_stage, r.verdict) == ("Pending", "-", None, "-")


def test_an_invalid_spec_is_listed_with_why_not_hidden() -> None:
    r = row(body("broken", spec={"flag": "x", "target": {"configMap": {"name": "cm"}},
                                 "stages": [{"weight": 50}, {"weight": 10}]}), NOW)
    assert r.name == "broken" and r.stage == "-"
    assert r.verdict.startswith("invalid spec:") and "spec.stages" in r.verdict


def test_a_status_field_this_cli_does_not_know_is_left_out_not_refused() -> None:
    """A newer operator may write more status than this CLI knows: it still lists the rollout."""
    newer = body("checkout", **{**PROGRESSING["status"], "shard": "2/3"})
    assert row(newer, NOW) == row(PROGRESSING, NOW)


def test_a_status_it_cannot_read_is_listed_with_why() -> None:
    r = row(body("odd", phase="Progressing", currentWeight=25, currentStage="second"), NOW)
    assert (r.name, r.phase, r.weight, r.stage) == ("odd", "Progressing", 25, "-")
    assert r.verdict.startswith("status not understood by this CLI") and "status.currentStage" in r.verdict


def test_rows_are_sorted_by_namespace_then_name() -> None:
    found = rows([body("b", "z"), body("a", "z"), body("c", "a")], NOW)
    assert [(r.namespace, r.name) for r in found] == [("a", "c"), ("z", "a"), ("z", "b")]


# --- the table ----------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return re.split(r" {3,}", line.strip())


def test_table_has_kubectl_style_columns() -> None:
    text = table(rows([PROGRESSING, ROLLED_BACK, PENDING], NOW), NOW)
    header, *lines = text.splitlines()
    assert _cells(header) == ["NAME", "PHASE", "WEIGHT", "STAGE", "TIME IN STAGE", "LAST VERDICT"]
    assert _cells(lines[0]) == ["cart", "Pending", "0%", "-", "-", "-"]
    assert _cells(lines[1]) == ["checkout", "Progressing", "25%", "2/4", "3m12s", "Passed"]
    assert _cells(lines[2]) == [
        "search", "RolledBack", "0%", "3/4", "-", "Failed: error-rate 0.12 > 0.05"]
    # columns line up: every value starts where its header does
    start = header.index("PHASE")
    assert all(line[start:].startswith(("Pending", "Progressing", "RolledBack")) for line in lines)


def test_table_with_all_namespaces_and_wide_adds_columns() -> None:
    text = table(rows([PROGRESSING, ROLLED_BACK], NOW), NOW, all_namespaces=True, wide=True)
    header, first, second = text.splitlines()
    assert _cells(header) == ["NAMESPACE", "NAME", "PHASE", "WEIGHT", "STAGE", "TIME IN STAGE", "LAST VERDICT",
                              "FLAG", "TARGET", "NEXT CHECK"]
    assert _cells(first)[-3:] == ["new-checkout", "configMap/feature-flags", "in 25s"]
    assert _cells(second)[0] == "shop"
    assert _cells(second)[-1] == "-"


def test_a_long_verdict_is_clipped_in_the_table_but_whole_in_json() -> None:
    long = "no answer from http://prometheus.monitoring.svc.cluster.local:9090 " * 3
    rollout = body("slow", phase="Progressing", currentStage=0, currentWeight=10, startedAt=_when(60),
                   stageStartedAt=_when(60), metrics=[metric("error-rate", "Error", None, message=long)])
    found = rows([rollout], NOW)
    line = table(found, NOW).splitlines()[1]
    verdict = line[table(found, NOW).splitlines()[0].index("LAST VERDICT"):]
    assert len(verdict) == VERDICT_WIDTH and verdict.endswith("...")
    (item,) = json.loads(as_json(found))["items"]
    assert item["lastVerdict"] == f"Error: error-rate ({long})"


def test_json_is_machine_readable() -> None:
    items = json.loads(as_json(rows([PROGRESSING, PENDING], NOW)))["items"]
    pending, progressing = items
    assert progressing == {
        "namespace": "shop", "name": "checkout", "phase": "Progressing", "weight": 25, "stage": "2/4",
        "timeInStageSeconds": 192, "lastVerdict": "Passed", "metrics": PROGRESSING["status"]["metrics"],
        "flag": "new-checkout", "target": "configMap/feature-flags", "nextCheck": "2026-01-01T12:00:25Z",
        "message": "",
    }
    assert pending["stage"] is None and pending["lastVerdict"] is None and pending["timeInStageSeconds"] is None
    assert pending["nextCheck"] == "2026-01-01T12:00:00Z"  # Pending: the operator starts it at once


def test_help_says_what_each_option_and_column_is() -> None:
    from featurerollout.commands.cli import build_parser

    parser = build_parser()
    text = parser._subparsers._group_actions[0].choices["list"].format_help()  # type: ignore[union-attr]
    for needle in ("-A, --all-namespaces", "-n NAMESPACE", "-o {wide,json}", "time in the", "last verdict",
                   "Passed", "NoData", "next", "kubectl featurerollout list"):
        assert needle in " ".join(text.split()), needle
    with pytest.raises(SystemExit):
        parser.parse_args(["list", "-A", "-n", "shop"])  # one or the other, as the help shows
