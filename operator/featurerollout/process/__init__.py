"""The operator process: read, decide, write, record, for every rollout it watches.

- `handlers`: the Kopf handlers (watch events in, work scheduled);
- `scheduler`: one heap of due looks for every rollout;
- `reconciler`: one look at one rollout, from reading the target to writing the status;
- `leader`, `sharding`: which replica acts on which rollout;
- `runner`: `featurerollout run`, the process itself.

May import every layer below it (`api`, `core`, `stats`, `edges`); never the commands.
"""
