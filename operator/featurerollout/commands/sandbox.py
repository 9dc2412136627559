"""`featurerollout sandbox`: where the local Kubernetes API went.

The sandbox (a local Kubernetes API for tests and demos) and the demo are not part of
featurerollout: `pip install featurerollout` and the operator's image carry neither. They are
their own distributions in this repository, `tools/sandbox` (the `featurerollout-sandbox`
command) and `tools/demo` (`python -m featurerollout_demo`, which `make demo` runs). This command
stays only to tell someone who types the old name where to look.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

MOVED = (
    "featurerollout sandbox: the local Kubernetes API is its own command now, from its own distribution:\n"
    "  pip install ./tools/sandbox      # from a checkout of featurerollout (`make install` does this)\n"
    "  featurerollout-sandbox --kubeconfig FILE --crd-dir crds\n"
    "See docs/sandbox.md."
)


def add_parser(subparsers: Any) -> None:
    """Register the `sandbox` subcommand, which only says where the sandbox went."""
    parser = subparsers.add_parser(
        "sandbox",
        help="moved: the local Kubernetes API is the `featurerollout-sandbox` command (tools/sandbox)",
        description=MOVED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Every argument of the old command (--kubeconfig, --help, ...) gets the same answer, not a
        # usage error: no prefix character here, so they are all taken as plain words.
        prefix_chars="\x00",
        add_help=False,
    )
    parser.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Say where the sandbox went; exit 2 (nothing was served)."""
    print(MOVED, file=sys.stderr)
    return 2
