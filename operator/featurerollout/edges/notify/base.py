"""The one small interface every receiver format implements, and the words they share.

A format turns a `Notification` into the JSON body its service takes; it never sees the URL or
a token (the dispatcher holds those), so no format can leak one.
"""

from __future__ import annotations

from typing import Any, Protocol

from featurerollout.api import NotificationEvent
from featurerollout.edges.notify.notices import Notification

MAX_MESSAGE = 2900  # Slack caps a text object at 3000 characters; keep every format under it


class Format(Protocol):
    """How one kind of receiver wants a notification."""

    kind: str  # the `receiver_kind` label: slack, teams, webhook

    def body(self, notification: Notification) -> dict[str, Any]:
        """The JSON body to POST."""
        ...


_TITLES = {
    NotificationEvent.STARTED: "started",
    NotificationEvent.STAGE_ADVANCED: "advanced",
    NotificationEvent.WAITING_FOR_APPROVAL: "is waiting for approval",
    NotificationEvent.ROLLED_BACK: "rolled back",
    NotificationEvent.SUCCEEDED: "succeeded",
    NotificationEvent.ABORTED: "aborted",
}


def pct(weight: float) -> str:
    return f"{weight:g}%"


def title(n: Notification) -> str:
    """`FeatureRollout shop/new-checkout rolled back (flag new-checkout, 0%)`."""
    where = f"flag {n.flag}, {pct(n.weight)}" + (f", stage {n.stage}" if n.stage else "")
    return f"FeatureRollout {n.namespace}/{n.rollout} {_TITLES[n.event]} ({where})"


def culprit(n: Notification) -> str | None:
    """`error-rate 0.4, budget <= 0.05` for a rollback caused by a metric; None otherwise."""
    if n.metric is None:
        return None
    value = "no value" if n.value is None else f"{n.value:g}"
    return f"{n.metric} {value}, budget {n.budget}" if n.budget else f"{n.metric} {value}"


def message(n: Notification) -> str:
    return n.message if len(n.message) <= MAX_MESSAGE else n.message[: MAX_MESSAGE - 1] + "…"


def stamp(n: Notification) -> str:
    return n.at.isoformat().replace("+00:00", "Z")
