"""`featurerollout-sandbox` (or `python -m featurerollout_sandbox`): serve a local Kubernetes API and
write a kubeconfig for it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from featurerollout_sandbox.kubeconfig import write_kubeconfig
from featurerollout_sandbox.server import SandboxServer
from featurerollout_sandbox.store import DEFAULT_HISTORY_LIMIT

DESCRIPTION = """\
Serve a local Kubernetes API on 127.0.0.1 for this project's kinds: namespaces, configmaps,
secrets, events, leases, CustomResourceDefinitions, and every CRD from --crd-dir and --crd (or
created at runtime with `kubectl apply -f crds/`); from a checkout, `--crd-dir crds` serves
featurerollout's own. Custom resources are pruned, defaulted and validated against their CRD
schema, CEL rules included. Once it serves, it writes a kubeconfig (context `sandbox`)
atomically; it runs until SIGINT or SIGTERM.

Tests drive fault injection and read the request log at /sandbox/faults and /sandbox/requests
(see featurerollout_sandbox.client.SandboxControl and docs/sandbox.md).
"""


def parser() -> argparse.ArgumentParser:
    """The command line of `featurerollout-sandbox`."""
    parser = argparse.ArgumentParser(
        prog="featurerollout-sandbox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, metavar="FILE",
                        help="where to write the kubeconfig once the server is ready")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--crd", action="append", default=[], type=Path, metavar="FILE",
                        help="also serve the CRDs in FILE (repeatable)")
    parser.add_argument("--crd-dir", type=Path, default=None, metavar="DIR",
                        help="serve every CRD in DIR (*.yaml, *.yml, *.json) at start (default: none)")
    parser.add_argument("--watch-history", type=int, default=DEFAULT_HISTORY_LIMIT, metavar="N",
                        help="events kept per resource for watches from a resourceVersion; older ones "
                             f"answer 410 Gone (default {DEFAULT_HISTORY_LIMIT})")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, metavar="SECONDS",
                        help="idle time between BOOKMARK events on watches that allow them (default 1)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="DEBUG logs every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.crd_dir is not None and not args.crd_dir.is_dir():
        print(f"featurerollout-sandbox: --crd-dir {args.crd_dir}: not a directory", file=sys.stderr)
        return 2
    try:
        server = SandboxServer(
            crd_paths=args.crd,
            port=args.port,
            history_limit=args.watch_history,
            bookmark_interval=args.bookmark_interval,
            crd_dir=args.crd_dir,
        )
    except (OSError, ValueError) as exc:
        print(f"featurerollout-sandbox: cannot load CRDs: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(server, args.kubeconfig))


async def _serve(server: SandboxServer, kubeconfig: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"featurerollout-sandbox: cannot listen on 127.0.0.1:{server.requested_port}: {exc}", file=sys.stderr)
        return 2
    write_kubeconfig(kubeconfig, server.url)
    logging.getLogger("featurerollout_sandbox").info("kubeconfig written to %s", kubeconfig)
    try:
        await stop.wait()
    finally:
        await server.stop()
    logging.getLogger("featurerollout_sandbox").info("sandbox stopped")
    return 0
