"""Slack incoming webhooks: `text` (the fallback every client and notification shows) and Block
Kit `blocks` (a header, the engine's message, the facts, and for a rollback the metric, its value
and its budget). https://api.slack.com/messaging/webhooks"""

from __future__ import annotations

from typing import Any

from featurerollout.edges.notify.base import culprit, message, pct, stamp, title
from featurerollout.edges.notify.notices import Notification

_ICONS = {"danger": ":rotating_light:", "good": ":white_check_mark:", "info": ":information_source:"}


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"}


class SlackFormat:
    kind = "slack"

    def body(self, notification: Notification) -> dict[str, Any]:
        n = notification
        head = title(n)
        why = culprit(n)
        fields = [_field("Rollout", f"{n.namespace}/{n.rollout}"), _field("Flag", n.flag),
                  _field("Phase", n.phase), _field("Weight", pct(n.weight))]
        if n.stage:
            fields.append(_field("Stage", n.stage))
        if n.metric is not None:
            fields.append(_field("Metric", n.metric))
            fields.append(_field("Value", "no value" if n.value is None else f"{n.value:g}"))
            if n.budget:
                fields.append(_field("Budget", n.budget))
        return {
            "text": f"{_ICONS[n.severity]} {head}" + (f": {why}" if why else ""),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": message(n)}},
                {"type": "section", "fields": fields[:10]},  # Slack allows 10 fields
                {"type": "context",
                 "elements": [{"type": "mrkdwn", "text": f"featurerollout · {n.event} · {stamp(n)}"}]},
            ],
        }
