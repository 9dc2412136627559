"""The operator's own Prometheus metrics, served on `--metrics-port` at /metrics.

They let an SRE alert on the operator the way they alert on Flagger (`flagger_canary_status`,
`flagger_canary_weight`): what each rollout exposes, and every rollback with its reason.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from featurerollout.api import FeatureRolloutStatus, Phase

ROLLOUT = ("namespace", "name")

weight = Gauge("featurerollout_weight_percent", "Exposure the target holds now, in percent.", [*ROLLOUT, "flag"])
stage = Gauge("featurerollout_stage", "Current stage, 0-based.", ROLLOUT)
phase = Gauge("featurerollout_phase", "1 for the rollout's current phase, 0 for the others.", [*ROLLOUT, "phase"])
metric_value = Gauge("featurerollout_metric_value", "Last value of each analysis metric.", [*ROLLOUT, "metric"])
rollbacks = Counter("featurerollout_rollbacks_total", "Rollbacks to 0%, by reason.", [*ROLLOUT, "reason"])
promotions = Counter("featurerollout_promotions_total", "Stage advances.", ROLLOUT)
analysis_errors = Counter(
    "featurerollout_analysis_errors_total", "Evaluations that errored (Prometheus unreachable, bad PromQL).",
    [*ROLLOUT, "metric"],
)
target_errors = Counter("featurerollout_target_errors_total", "Failed target writes, by reason.", [*ROLLOUT, "reason"])
reconcile_seconds = Histogram(
    "featurerollout_reconcile_duration_seconds", "Time to reconcile one rollout (measuring included).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
status_writes = Counter("featurerollout_status_writes_total", "Status writes to the API.")
notifications = Counter(
    "featurerollout_notifications_total",
    "Notifications by receiver kind (slack, teams, webhook) and result: sent; failed (after retries, or its "
    "Secret could not be read); dropped (the queue was full).",
    ["receiver_kind", "result"],
)
notification_queue = Gauge("featurerollout_notification_queue_depth", "Notifications waiting to be sent.")
# Leader election (leader.py): one series per Lease this process campaigns for.
leader = Gauge("featurerollout_leader", "1 while this process holds the Lease, else 0.", ["lease"])
leader_transitions = Counter(
    "featurerollout_leader_transitions_total", "Times this process became the leader of the Lease.", ["lease"]
)
# Issue 13, "Write less under load" and "Analysis at scale" (the dashboard reads these names).
target_writes = Counter(
    "featurerollout_target_writes_total",
    "Writes of a target object (ConfigMap, FeatureFlag, HTTPRoute), by result: ok, conflict (409, re-read and "
    "retried), error.",
    ["result"],
)
prometheus_queries = Counter(
    "featurerollout_prometheus_queries_total",
    "PromQL queries sent to Prometheus; batched=true: one grouped query that answered several rollouts.",
    ["batched"],
)
analysis_lag = Histogram(
    "featurerollout_analysis_lag_seconds",
    "From when a rollout's analysis was due to when its metrics were evaluated.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
status_writes_deferred = Counter(
    "featurerollout_status_writes_deferred_total",
    "Evaluations whose status was not written because no verdict changed (--analysis-status-every).",
)
for _result in ("ok", "conflict", "error"):  # every series exists from the start, at 0
    target_writes.labels(_result)
for _batched in ("true", "false"):
    prometheus_queries.labels(_batched)


def observe(namespace: str, name: str, flag: str, status: FeatureRolloutStatus) -> None:
    """Record a rollout's status in the gauges."""
    weight.labels(namespace, name, flag).set(status.current_weight)
    stage.labels(namespace, name).set(status.current_stage)
    for candidate in Phase:
        phase.labels(namespace, name, candidate.value).set(1 if status.phase == candidate else 0)
    for metric in status.metrics:
        if metric.value is not None:
            metric_value.labels(namespace, name, metric.name).set(metric.value)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted rollout's series so that they do not linger."""
    for gauge in (weight, stage, phase, metric_value):
        for labels in list(gauge._metrics):  # no public API lists a metric's label sets
            if labels[:2] == (namespace, name):
                gauge.remove(*labels)
