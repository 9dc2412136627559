"""The `featurerollout` command (also installed as `kubectl-featurerollout`).

Each subcommand lives in the module that owns its job; this module only wires them up.
A subcommand module exposes `add_parser(subparsers)`, which registers the parser and sets
`func` (taking the parsed namespace, returning an exit code) as its default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from featurerollout import __version__

# The modules that own the subcommands, in the order `--help` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "featurerollout.process.runner",  # run
    "featurerollout.commands.status_view",  # status
    "featurerollout.commands.listing",  # list
    "featurerollout.commands.manual",  # promote, pause, resume, abort, retry
    "featurerollout.commands.crd",  # crd
    "featurerollout.commands.simulate",  # simulate
    "featurerollout.commands.sandbox",  # sandbox (only says where it went)
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="featurerollout",
        description="Roll a feature flag out in stages; roll it back when Prometheus says it hurts.",
    )
    parser.add_argument("--version", action="version", version=f"featurerollout {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console scripts."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
