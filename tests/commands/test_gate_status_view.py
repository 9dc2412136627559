"""`featurerollout status` shows the gate waited at, since when and why, and the gates that opened."""

from __future__ import annotations

from datetime import UTC, datetime

from featurerollout.commands.status_view import render

NOW = datetime(2026, 1, 1, 12, 10, 0, tzinfo=UTC)


def test_render_shows_the_gate_waited_at_and_since_when() -> None:
    body = {
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {"flag": "shop", "target": {"configMap": {"name": "flags"}},
                 "stages": [{"weight": 10, "duration": "1m"}, {"weight": 25, "duration": "1m"},
                            {"weight": 50, "duration": "1m"}, {"weight": 100}],
                 "gates": [{"name": "ok-50", "before": "Stage", "stage": 3, "approval": {}},
                           {"name": "smoke", "before": "Start", "webhook": {"url": "http://c.example/s"}}]},
        "status": {
            "phase": "Waiting", "currentStage": 1, "currentWeight": 25, "stage": "2/4",
            "startedAt": "2026-01-01T12:00:00Z", "stageStartedAt": "2026-01-01T12:01:00Z",
            "gate": {"name": "ok-50", "kind": "approval", "before": "Stage 3", "since": "2026-01-01T12:02:00Z",
                     "message": "run `featurerollout approve` to open it"},
            "openedGates": [{"name": "smoke", "before": "Start", "at": "2026-01-01T12:00:00Z",
                             "message": "POST http://c.example/s answered 200 OK"}],
        },
    }
    view = render(body, NOW)
    assert "Phase:    Waiting" in view
    assert ("Gate:     waiting for approval gate 'ok-50' before stage 3 since 2026-01-01T12:02:00Z (8m0s ago)"
            in view)
    assert "          run `featurerollout approve` to open it" in view
    assert ("Opened:   gate 'smoke' before the first exposure at 2026-01-01T12:00:00Z: POST http://c.example/s "
            "answered 200 OK") in view
