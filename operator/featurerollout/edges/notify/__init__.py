"""Notifications: Slack, Microsoft Teams and generic JSON webhooks, told about a rollout's Started,
StageAdvanced, WaitingForApproval, RolledBack, Succeeded and Aborted (see docs/notifications.md).

`events.derive()` (pure) picks them from the engine's decision; `dispatcher.Notifier` sends them
from a bounded queue, off the reconcile's path; one module per receiver format (`slack`, `teams`,
`webhook`) behind `base.Format`.
"""

from featurerollout.edges.notify.dispatcher import Notifier, kube_secrets
from featurerollout.edges.notify.notices import Notification, derive

__all__ = ["Notification", "Notifier", "derive", "kube_secrets"]
