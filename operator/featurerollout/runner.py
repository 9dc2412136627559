"""`featurerollout run`: the operator process."""

from __future__ import annotations

import argparse
import logging
from typing import Any

LOG_FORMATS = ("text", "json", "full")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator (current kubeconfig, or in-cluster)",
        description="Run the FeatureRollout operator. It watches FeatureRollouts, steps each flag "
        "through its stages, evaluates the error budgets in Prometheus, and rolls a flag back to 0%% "
        "when a budget breaks. Credentials: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else "
        "the in-cluster service account.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context to use")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS",
        help="watch this namespace (repeatable; globs like 'team-*' work)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--standalone", action="store_true",
        help="do not coordinate with other replicas (Kopf peering); use with a single replica",
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text", help="log line format (default: text)")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info", help="default: info"
    )
    parser.add_argument(
        "--liveness", metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8081/healthz (off by default)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=8080, metavar="PORT",
        help="serve the operator's Prometheus metrics on this port at /metrics (default 8080; 0: a free "
        "port, which the log line 'serving the operator's metrics on :PORT/metrics' names)",
    )
    parser.add_argument(
        "--no-metrics", action="store_true", help="do not serve the operator's metrics (wins over --metrics-port)"
    )
    parser.add_argument(
        "--resync", type=float, default=300.0, metavar="SECONDS",
        help="look at every rollout and its target at least this often, finished ones too, to find and put "
        "right drift (default 300: each look is two reads, so 1,000 rollouts cost about 7 reads a second)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64,
        help="rollouts worked on at once (each waits mostly on I/O; default 64)",
    )
    parser.add_argument(
        "--no-query-batching", action="store_true",
        help="send each rollout's queries on their own: no round that sends an identical query once and "
        "answers rollouts that differ only in {{flag}} with one query grouped by the flag (for comparison)",
    )
    parser.add_argument(
        "--analysis-status-every", type=float, default=0.0, metavar="SECONDS",
        help="write an evaluation that changes no verdict (result, failure and error counts, phase) only once "
        "the stored one is this old; the status then shows values as of its lastAnalysisAt (default 0: write "
        "every evaluation; at 1,000 rollouts x 10 s that is 100 status writes a second)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Configure logging and the Kubernetes client, then hand over to Kopf until SIGINT/SIGTERM."""
    import kopf

    from featurerollout.handlers import OperatorState, build_registry
    from featurerollout.kube import Kube, load_config

    load_config(args.kubeconfig, args.context)
    kopf.configure(
        debug=args.log_level == "debug",
        verbose=args.log_level in ("debug", "info"),
        quiet=args.log_level in ("warning", "error"),
        log_format={
            "text": kopf.LogFormat.PLAIN,
            "json": kopf.LogFormat.JSON,
            "full": kopf.LogFormat.FULL,
        }[args.log_format],
    )
    logging.getLogger().setLevel(args.log_level.upper())
    # The client logs every request at debug level; that is noise even when debugging us.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # httpx logs one INFO line per webhook request; the target's own errors say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if args.log_level != "debug":
        # Kopf says "Handler ... succeeded" for every watch event; our own lines say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    state = OperatorState(Kube(), concurrency=args.concurrency, resync=args.resync,
                          query_batching=not args.no_query_batching,
                          analysis_status_every=args.analysis_status_every)
    registry = build_registry(
        state, kubeconfig=args.kubeconfig, context=args.context,
        metrics_port=None if args.no_metrics else args.metrics_port,
    )
    kopf.run(
        registry=registry,
        standalone=args.standalone,
        namespaces=args.namespace,
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0
