"""Pure parts of the CLI: the request annotation and the status view."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from featurerollout.api import ControlAction, FeatureRolloutStatus, Phase, parse_spec
from featurerollout.commands.manual import request_patch
from featurerollout.commands.status_view import progress_bar, render, time_left
from featurerollout.core.manual_requests import REQUEST_ANNOTATION, BadRequest, parse_request

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEC = {"flag": "f", "target": {"configMap": {"name": "cm"}},
        "stages": [{"weight": 10, "duration": "1m"}, {"weight": 50, "duration": "1m"}, {"weight": 100}]}


def test_request_patch_round_trips_through_the_annotation() -> None:
    patch = request_patch(ControlAction.PAUSE, NOW)
    annotations = patch["metadata"]["annotations"]
    request = parse_request(annotations)
    assert request is not None
    assert request.action == ControlAction.PAUSE
    assert request.id.startswith("20260101T120000-")
    assert request_patch(ControlAction.PAUSE, NOW) != patch  # every request gets an id of its own


def test_no_annotation_is_no_request() -> None:
    assert parse_request({}) is None
    assert parse_request(None) is None


@pytest.mark.parametrize("raw", ["pause", '{"id": "1"}', '{"id": "1", "action": "explode"}', "[]"])
def test_malformed_request_says_what_it_must_look_like(raw: str) -> None:
    with pytest.raises(BadRequest, match=re.escape("promote|pause|resume|abort|retry")):
        parse_request({REQUEST_ANNOTATION: raw})


def _body(**status: object) -> dict[str, object]:
    return {"metadata": {"name": "r", "namespace": "shop"}, "spec": SPEC, "status": status}


def test_progress_bar_fills_done_stages_and_part_of_the_current_one() -> None:
    spec = parse_spec(SPEC)
    status = FeatureRolloutStatus(phase=Phase.PROGRESSING, current_stage=1, current_weight=50,
                                  stage_started_at=NOW - timedelta(seconds=30))
    bar = progress_bar(spec, status, NOW)
    first, labels = bar.split("\n")
    segments = first.strip("[]").split("|")
    assert segments[0] == "#" * 12
    assert segments[1] == "#" * 6 + "-" * 6
    assert segments[2] == "-" * 12
    assert labels.split() == ["10%", "50%", "100%"]


def test_time_left_counts_down_the_hold() -> None:
    spec = parse_spec(SPEC)
    status = FeatureRolloutStatus(phase=Phase.PROGRESSING, current_stage=0, current_weight=10,
                                  stage_started_at=NOW - timedelta(seconds=15))
    assert time_left(spec, status, NOW) == "45s"
    assert time_left(spec, status, NOW + timedelta(minutes=2)) == "hold done"


def test_render_shows_phase_stage_weight_and_metrics_against_budgets() -> None:
    body = _body(phase="Progressing", currentStage=0, currentWeight=10,
                 stageStartedAt=(NOW - timedelta(seconds=15)).isoformat(),
                 metrics=[{"name": "error-rate", "value": 0.002, "result": "Passed", "consecutiveFailures": 0}])
    body["spec"] = {**SPEC, "analysis": {"prometheus": {"address": "http://p:9090"},
                                         "metrics": [{"name": "error-rate", "query": "q", "max": 0.01,
                                                      "failureLimit": 2}]}}
    view = render(json.loads(json.dumps(body)), NOW)
    assert "FeatureRollout shop/r" in view
    assert "Phase:    Progressing" in view
    assert "Stage:    1/3 at 10%" in view
    assert "Left:     45s" in view
    row = next(line for line in view.splitlines() if line.strip().startswith("error-rate"))
    assert row.split() == ["error-rate", "0.002", "<=", "0.01", "Passed", "0/2"]


def test_render_of_an_invalid_spec_says_so() -> None:
    body = _body()
    body["spec"] = {"flag": "f"}
    assert "invalid spec: " in render(body, NOW) and "spec.target" in render(body, NOW)
