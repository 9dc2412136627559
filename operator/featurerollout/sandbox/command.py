"""`featurerollout sandbox`: serve a local Kubernetes API and write a kubeconfig for it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurerollout.commands.extras import missing_extra_message
from featurerollout.sandbox.kubeconfig import write_kubeconfig
from featurerollout.sandbox.store import DEFAULT_CRD_DIR, DEFAULT_HISTORY_LIMIT

if TYPE_CHECKING:
    from featurerollout.sandbox.server import SandboxServer

DESCRIPTION = """\
Serve a local Kubernetes API on 127.0.0.1 for this project's kinds: namespaces, configmaps,
secrets, events, leases, CustomResourceDefinitions, and every CRD from --crd-dir and --crd
(or created at runtime with `kubectl apply -f crds/`). Custom resources are pruned, defaulted
and validated against their CRD schema, CEL rules included. Once it serves, it writes a
kubeconfig (context `sandbox`) atomically; it runs until SIGINT or SIGTERM.

Tests drive fault injection and read the request log at /sandbox/faults and /sandbox/requests
(see featurerollout.sandbox.client.SandboxControl and docs/sandbox.md).
"""


def add_parser(subparsers: Any) -> None:
    """Register the `sandbox` subcommand."""
    parser = subparsers.add_parser(
        "sandbox",
        help="serve a local Kubernetes API (for tests and demos) and write a kubeconfig for it",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, metavar="FILE",
                        help="where to write the kubeconfig once the server is ready")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free port)")
    parser.add_argument("--crd", action="append", default=[], type=Path, metavar="FILE",
                        help="also serve the CRDs in FILE (repeatable)")
    parser.add_argument("--crd-dir", type=Path, default=DEFAULT_CRD_DIR, metavar="DIR",
                        help=f"serve every CRD in DIR at start (default: {DEFAULT_CRD_DIR})")
    parser.add_argument("--no-default-crds", action="store_true", help="do not load the CRDs of --crd-dir")
    parser.add_argument("--watch-history", type=int, default=DEFAULT_HISTORY_LIMIT, metavar="N",
                        help="events kept per resource for watches from a resourceVersion; older ones "
                             f"answer 410 Gone (default {DEFAULT_HISTORY_LIMIT})")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, metavar="SECONDS",
                        help="idle time between BOOKMARK events on watches that allow them (default 1)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="DEBUG logs every request")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the exit code."""
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Imported here: its dependencies (aiohttp, cel-python, ...) are the optional `sandbox`
        # extra, and every other subcommand must work without them.
        from featurerollout.sandbox.server import SandboxServer
    except ImportError as error:
        print(missing_extra_message("featurerollout sandbox", error.name), file=sys.stderr)
        return 2
    try:
        server = SandboxServer(
            crd_paths=args.crd,
            port=args.port,
            history_limit=args.watch_history,
            bookmark_interval=args.bookmark_interval,
            default_crds=not args.no_default_crds,
            crd_dir=args.crd_dir,
        )
    except (OSError, ValueError) as exc:
        print(f"featurerollout sandbox: cannot load CRDs: {exc}", file=sys.stderr)
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
        print(f"featurerollout sandbox: cannot listen on 127.0.0.1:{server.requested_port}: {exc}", file=sys.stderr)
        return 2
    write_kubeconfig(kubeconfig, server.url)
    logging.getLogger("featurerollout.sandbox").info("kubeconfig written to %s", kubeconfig)
    try:
        await stop.wait()
    finally:
        await server.stop()
    logging.getLogger("featurerollout.sandbox").info("sandbox stopped")
    return 0
