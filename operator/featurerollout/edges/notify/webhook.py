"""A generic JSON webhook: the notification's fields, flat, for any system to take.

`{"rollout", "namespace", "flag", "event", "phase", "weight", "stage", "message", "time"}`, and for
RolledBack and Aborted `reason`, and for RolledBack `metric`, `value` and `budget` (null when
the rollback had none, e.g. value for an analysis that could not be evaluated)."""

from __future__ import annotations

from typing import Any

from featurerollout.api import NotificationEvent
from featurerollout.edges.notify.base import stamp
from featurerollout.edges.notify.notices import Notification


def _number(weight: float) -> int | float:
    return int(weight) if float(weight).is_integer() else weight


class WebhookFormat:
    kind = "webhook"

    def body(self, notification: Notification) -> dict[str, Any]:
        n = notification
        body: dict[str, Any] = {
            "rollout": n.rollout, "namespace": n.namespace, "flag": n.flag, "event": n.event.value,
            "phase": n.phase, "weight": _number(n.weight), "stage": n.stage, "message": n.message,
            "time": stamp(n),
        }
        if n.event in (NotificationEvent.ROLLED_BACK, NotificationEvent.ABORTED):
            body["reason"] = n.reason
        if n.event == NotificationEvent.ROLLED_BACK:
            body.update(metric=n.metric, value=n.value, budget=n.budget)
        return body
