"""The chart's egress values (docs/security.md#egress): a cluster install refuses loopback, the
CLI's default allows it (tests and the demo run the operator next to their receivers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from featurerollout.commands.cli import build_parser

from .chart_support import of_kind, render


def _parsed(home: Path, *sets: str) -> argparse.Namespace:
    (deployment,) = of_kind(render(home, sets=sets), "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return build_parser().parse_args(operator["args"])


def test_a_cluster_install_denies_loopback_and_the_networks_it_lists(tmp_path: Path) -> None:
    default = _parsed(tmp_path)
    assert default.deny_loopback is True and default.deny_network == []
    listed = _parsed(tmp_path, "egress.denyNetworks={10.96.0.0/12,192.168.0.0/16}", "egress.denyLoopback=false")
    assert listed.deny_loopback is False
    assert listed.deny_network == ["10.96.0.0/12", "192.168.0.0/16"]


def test_the_cli_allows_loopback_unless_told() -> None:
    args = build_parser().parse_args(["run"])
    assert args.deny_loopback is False and args.deny_network == []
