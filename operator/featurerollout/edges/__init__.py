"""The edges: every place the operator talks to the world, each behind one small interface.

- `kube`, `api_errors`, `events`, `mergepatch`: the Kubernetes API (objects, its errors, Events,
  status patches);
- `targets/`: where a flag's exposure is written (one module per target kind);
- `metrics/`: where analysis asks for numbers (one module per metric backend);
- `notify/`: where people are told (one module per notifier);
- `gate_webhook`: the webhook gate's question;
- `http_bodies`: every HTTP answer read with a byte cap (Prometheus's, the webhooks');
- `egress`: where the operator may connect (the deny list, and the HTTP clients that enforce it);
- `telemetry`: the operator's own Prometheus metrics.

May import: `featurerollout.api`, `featurerollout.core` and `featurerollout.stats`; never the
process (`featurerollout.process`) or the commands. Targets, metric providers and notifiers do
not import one another.
"""
