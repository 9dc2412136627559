"""Microsoft Teams (a Workflows "post to a channel when a webhook request is received" URL, or a
legacy incoming webhook): a message with one Adaptive Card (title, message, a FactSet)."""

from __future__ import annotations

from typing import Any

from featurerollout.edges.notify.base import message, pct, stamp, title
from featurerollout.edges.notify.notices import Notification

_COLORS = {"danger": "Attention", "good": "Good", "info": "Default"}


class TeamsFormat:
    kind = "teams"

    def body(self, notification: Notification) -> dict[str, Any]:
        n = notification
        facts = [("Rollout", f"{n.namespace}/{n.rollout}"), ("Flag", n.flag), ("Phase", n.phase),
                 ("Weight", pct(n.weight))]
        if n.stage:
            facts.append(("Stage", n.stage))
        if n.metric is not None:
            facts.append(("Metric", n.metric))
            facts.append(("Value", "no value" if n.value is None else f"{n.value:g}"))
            if n.budget:
                facts.append(("Budget", n.budget))
        facts.append(("Time", stamp(n)))
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": title(n), "weight": "Bolder", "size": "Medium", "wrap": True,
                 "color": _COLORS[n.severity]},
                {"type": "TextBlock", "text": message(n), "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts]},
            ],
        }
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card},
        ]}
