"""`featurerollout crd`: print the CRDs rendered from the API models, or write them (`make crd`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from featurerollout.api.crd import KINDS, Kind, render_all_yaml, render_crd_yaml
from featurerollout.api.group import KIND


def _run(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        # `make crd`: one file per kind, so that `kubectl apply -f crds/` installs them all.
        for kind in KINDS:
            (Path(args.output_dir) / kind.file_name).write_text(render_crd_yaml(kind), encoding="utf-8")
        return 0
    text = render_all_yaml() if args.all else render_crd_yaml(_KINDS_BY_NAME[args.kind])
    if args.check is not None:
        committed = Path(args.check).read_text(encoding="utf-8") if Path(args.check).exists() else ""
        if committed != text:
            print(f"{args.check} is out of date with the API models (api/): run `make crd` and commit it",
                  file=sys.stderr)
            return 1
        return 0
    if args.output is not None:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


_KINDS_BY_NAME: dict[str, Kind] = {kind.kind: kind for kind in KINDS}


def add_parser(subparsers: Any) -> None:
    """Register `featurerollout crd`."""
    parser = subparsers.add_parser(
        "crd",
        help="print the FeatureRollout CustomResourceDefinition (YAML)",
        description="Print the FeatureRollout CustomResourceDefinition, rendered from the API models, "
        "as YAML: `featurerollout crd | kubectl apply -f -`. `make crd` writes it to "
        "crds/featurerollouts.yaml.",
    )
    parser.add_argument(
        "--kind", choices=sorted(_KINDS_BY_NAME), default=KIND,
        help="which kind's CRD (default: FeatureRollout)",
    )
    parser.add_argument("--all", action="store_true", help="every kind's CRD, one YAML document each")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--output-dir", metavar="DIR", help="write every kind's CRD to DIR/<plural>.yaml (make crd)"
    )
    target.add_argument("-o", "--output", metavar="FILE", help="write the CRD to FILE instead of stdout")
    target.add_argument(
        "--check",
        metavar="FILE",
        help="print nothing; exit 1 if FILE differs from the CRD the models render (for CI)",
    )
    run: Callable[[argparse.Namespace], int] = _run
    parser.set_defaults(func=run)
