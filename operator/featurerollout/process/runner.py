"""`featurerollout run`: the operator process.

Its imports of Kopf, the Kubernetes client and the rest of the process are inside `run()` (and
the functions it calls): every `featurerollout` command builds its parser from this module, and
`featurerollout status` must not pay for loading an operator it does not start. They hide no
cycle (tests/packaging/test_layers.py finds none, function-local imports included).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from featurerollout.process.sharding import InvalidShard, Shard, lease_name, parse_shard

if TYPE_CHECKING:
    from featurerollout.process.leader import LeaseSettings

LOG_FORMATS = ("text", "json", "full")
# The most a process takes to end after SIGTERM/SIGINT, whatever the API server does: past it, Kopf
# kills the process (its `ultimate_exiting_timeout`, 10 minutes by default). Below Kubernetes'
# default terminationGracePeriodSeconds (30 s). The graceful path (stop acting, release the Lease
# within 2 x --retry-period capped at leader.RELEASE_TIMEOUT, flush notifications for 2 s) ends
# well before it (docs/high-availability.md, "Stopping").
EXIT_DEADLINE = 20.0

log = logging.getLogger("featurerollout")
# edges.http_bodies.MAX_ANSWER_BYTES, spelled out so that `--help` imports no HTTP client.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024


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
        help="no leader election: act at once, on every rollout (or the --shard's); run one replica only",
    )
    ha = parser.add_argument_group(
        "leader election and sharding", "Replicas elect one leader on a coordination.k8s.io/v1 Lease; only "
        "the leader acts, standbys keep watching (docs/high-availability.md).",
    )
    ha.add_argument("--identity", metavar="ID",
                    help="this process in the Lease's holderIdentity (default: $POD_NAME, else hostname-pid)")
    ha.add_argument("--lease-namespace", metavar="NS",
                    help="namespace of the Lease (default: $POD_NAMESPACE or the pod's namespace, else default)")
    ha.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                    help="how long a standby waits before it takes over a Lease that is not renewed (default 15)")
    ha.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS",
                    help="how long the leader keeps trying to renew before it stops acting (default 10)")
    ha.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS",
                    help="time between the leader's renewals (default 2; a standby tries 4 times as often)")
    ha.add_argument("--shard", type=_shard, metavar="INDEX/COUNT",
                    help="take only the rollouts whose namespace/name hash falls in slice INDEX of COUNT "
                    "(0-based); each shard is elected on its own Lease, featurerollout-shard-INDEX-of-COUNT")
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
        help="look at every rollout and its target at least this often, finished ones too, to find drift: "
        "a flag raised above the rollout's weight is put back down, one lowered by hand is left as the person "
        "left it and recorded (default 300: each look is two reads, so 1,000 rollouts cost about 7 reads a second)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64,
        help="rollouts worked on at once (each waits mostly on I/O; default 64)",
    )
    parser.add_argument(
        "--prometheus-address", metavar="URL", type=_prometheus_url,
        help="the Prometheus HTTP API to ask for metrics that name none (no spec.analysis.prometheus and no "
        "template's), e.g. http://prometheus.monitoring:9090 (default: none; such a metric is then an "
        "analysis error that says so)",
    )
    parser.add_argument(
        "--no-query-batching", action="store_true",
        help="send each rollout's queries on their own: no round that sends an identical query once and "
        "answers rollouts that differ only in {{flag}} with one query grouped by the flag (for comparison)",
    )
    parser.add_argument(
        "--analysis-status-every", type=float, default=0.0, metavar="SECONDS",
        help="write an evaluation that changes no verdict (result, failure and error counts, phase) only once "
        "the stored one is this old (each rollout waits its own share, half to all of it, so that rollouts "
        "started together don't write together); the status then shows values as of its lastAnalysisAt "
        "(default 0: write every evaluation; at 1,000 rollouts x 10 s that is 100 status writes a second)",
    )
    parser.add_argument(
        "--max-response-bytes", type=_positive_bytes, default=MAX_RESPONSE_BYTES, metavar="BYTES",
        help="read at most this much of one Prometheus answer: a larger one is an analysis error that names "
        f"the cap, never a memory spike (default {MAX_RESPONSE_BYTES}: 10 MiB)",
    )
    egress = parser.add_argument_group(
        "egress", "Where the operator may connect for the URLs rollouts name (Prometheus, webhook gates and "
        "targets, notifications), checked after DNS resolution: never link-local networks (169.254.0.0/16, "
        "fe80::/10) or the cloud metadata addresses (docs/security.md).",
    )
    egress.add_argument(
        "--deny-loopback", action="store_true",
        help="refuse loopback too (127.0.0.0/8, ::1, 0.0.0.0/8, ::): the chart sets it, since in a cluster "
        "nothing a rollout names should be the operator's own pod (default: loopback allowed, for a "
        "Prometheus or receiver on the machine that runs the operator)",
    )
    egress.add_argument(
        "--deny-network", action="append", default=[], metavar="CIDR", type=_network,
        help="refuse this network as well, e.g. 10.96.0.0/12 (repeatable)",
    )
    parser.set_defaults(func=run)


def _positive_bytes(text: str) -> int:
    if not text.isdigit() or int(text) < 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes of at least 1024")
    return int(text)


def _network(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network (CIDR, e.g. 10.0.0.0/8)") from None


def _prometheus_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text) > 2048:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except InvalidShard as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--shard ")) from None


def lease_settings(args: argparse.Namespace) -> LeaseSettings:
    """The Lease this process campaigns for; InvalidTimings names a bad flag."""
    # Imported here: the kubernetes client is not needed to print the CLI's help.
    from featurerollout.process.leader import LeaseSettings, default_identity, default_namespace

    return LeaseSettings(
        name=lease_name(args.shard),
        namespace=args.lease_namespace or default_namespace(),
        identity=args.identity or default_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


def run(args: argparse.Namespace) -> int:
    """Configure logging and the Kubernetes client, then hand over to Kopf until SIGINT/SIGTERM."""
    import kopf

    from featurerollout import __version__
    from featurerollout.edges import egress
    from featurerollout.edges.kube import Kube, load_config
    from featurerollout.process.handlers import OperatorState, build_registry
    from featurerollout.process.leader import InvalidTimings, default_identity

    settings = None
    if not args.standalone:
        try:
            settings = lease_settings(args)
        except InvalidTimings as error:
            print(f"featurerollout run: error: {error}", file=sys.stderr)
            return 2
    load_config(args.kubeconfig, args.context)
    egress.install(egress.EgressPolicy.default(deny_loopback=args.deny_loopback, deny=args.deny_network))
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

    if args.log_level != "debug":
        # The client's leader election logs every try at INFO; only its failures are kept (as
        # warnings), and ours says when leadership changes.
        from featurerollout.process.leader import LibraryFailures

        logging.getLogger("leaderelection").addFilter(LibraryFailures())

    kube = Kube()
    identity = settings.identity if settings is not None else args.identity or default_identity()
    # The audit log then tells which process made each request.
    kube.api.user_agent = f"featurerollout/{__version__} ({identity})"
    elector = guard = None
    if settings is not None:
        from featurerollout.edges.kube import _api_client
        from featurerollout.process.leader import Elector, LeaseObserver, OwnershipGuard

        lease_api = _api_client()
        lease_api.user_agent = kube.api.user_agent
        elector = Elector(settings, lease_api)
        observer = LeaseObserver(elector.coordination, settings.namespace, recheck=settings.retry_period / 2)
        guard = OwnershipGuard(elector, kube, observer, args.shard)
        log.info("%s: campaigning for Lease %s/%s%s", identity, settings.namespace, settings.name,
                 f" (shard {args.shard})" if args.shard else "")
    state = OperatorState(
        kube, concurrency=args.concurrency, resync=args.resync, elector=elector, guard=guard, shard=args.shard,
        prometheus_address=args.prometheus_address, query_batching=not args.no_query_batching,
        analysis_status_every=args.analysis_status_every, max_answer_bytes=args.max_response_bytes,
    )
    registry = build_registry(
        state, kubeconfig=args.kubeconfig, context=args.context,
        metrics_port=None if args.no_metrics else args.metrics_port,
    )
    operator_settings = kopf.OperatorSettings()
    operator_settings.process.ultimate_exiting_timeout = EXIT_DEADLINE
    kopf.run(
        registry=registry,
        settings=operator_settings,
        # Kopf's own peering is never used: it pauses a standby's watches (docs/high-availability.md).
        standalone=True,
        namespaces=args.namespace,
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )
    # The cleanup has run: the Lease is released, or given up on. A client call still waiting on an
    # API server that went away (the kubernetes client has no deadline of its own) holds a worker
    # thread, and the interpreter would wait for that thread at exit for ever: end here instead.
    exit_now(0)
    return 0


def exit_now(code: int) -> None:
    """End the process without waiting for worker threads, after flushing the logs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
