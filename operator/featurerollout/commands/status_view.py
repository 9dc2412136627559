"""`featurerollout status NAME [--watch]`: the stage, the weight, the time left, the metrics
against their budgets, and a progress bar across the stages.

`render()` is pure (object + now -> text) so that it is tested without a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    InvalidFeatureRollout,
    Phase,
    format_duration,
    parse_spec,
    settled,
)
from featurerollout.commands.manual import add_target_arguments, client_for, explain_api_error
from featurerollout.commands.presentation import read_object, stage_of
from featurerollout.core.gates import point_words
from featurerollout.core.measurement import analysis_interval
from featurerollout.core.messages import pct as _pct
from featurerollout.edges.kube import Kube
from featurerollout.edges.targets import TargetError, target_for
from featurerollout.edges.targets.httproute import HTTPRouteTarget

SEGMENT = 12  # characters per stage in the progress bar


def progress_bar(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> str:
    """`[############|######------|------------]` with one segment per stage: full for stages
    done, partly full for the current one by the share of its hold that has passed."""
    segments: list[str] = []
    for index, stage in enumerate(spec.stages):
        if status.phase == Phase.SUCCEEDED or index < status.current_stage:
            filled = SEGMENT
        elif index == status.current_stage and status.current_weight > 0 and status.stage_started_at:
            hold = stage.hold.total_seconds()
            elapsed = (now - status.stage_started_at).total_seconds()
            filled = SEGMENT if hold <= 0 else min(SEGMENT, int(SEGMENT * elapsed / hold))
        else:
            filled = 0
        segments.append("#" * filled + "-" * (SEGMENT - filled))
    labels = "".join(_pct(s.weight).center(SEGMENT + 1) for s in spec.stages)
    return "[" + "|".join(segments) + "]\n " + labels.rstrip()


def time_left(spec: FeatureRolloutSpec, status: FeatureRolloutStatus, now: datetime) -> str | None:
    """Time left in the current stage's hold, when it is still running."""
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED, Phase.WAITING) or status.stage_started_at is None:
        return None
    stage = spec.stages[min(status.current_stage, len(spec.stages) - 1)]
    left = status.stage_started_at + stage.hold - now
    return format_duration(left) if left.total_seconds() > 0 else "hold done"


def _budget(spec: FeatureRolloutSpec, name: str) -> str:
    if spec.analysis is None:
        return ""
    metric = next((m for m in spec.analysis.metrics if m.name == name), None)
    return metric.budget() if metric else ""


def _limit(spec: FeatureRolloutSpec, name: str) -> str:
    if spec.analysis is None:
        return ""
    metric = next((m for m in spec.analysis.metrics if m.name == name), None)
    return str(metric.failure_limit) if metric else ""


@dataclass(frozen=True)
class TargetReading:
    """What the target itself holds, read back when the view is drawn."""

    where: str
    reads_back: bool
    weight: float | None = None
    detail: str = ""  # e.g. the two backendRefs' weights of an HTTPRoute
    error: str = ""


async def read_target(kube: Kube, namespace: str, name: str, spec: FeatureRolloutSpec) -> TargetReading:
    """Read the weight the rollout's target holds now (an edge: it calls the API)."""
    target = target_for(kube, namespace, spec, rollout=name)
    if not target.reads_back:
        return TargetReading(target.describe(), reads_back=False)
    try:
        if isinstance(target, HTTPRouteTarget):
            feature, stable = await target.current_weights()
            detail = f"{spec.target.http_route.feature_backend} {feature}, " \
                f"{spec.target.http_route.stable_backend} {stable}" if spec.target.http_route else ""
            return TargetReading(target.describe(), True, await target.current_weight(), detail)
        return TargetReading(target.describe(), True, await target.current_weight())
    except TargetError as error:
        return TargetReading(target.describe(), True, error=f"{error.reason}: {error.message}")


def target_line(reading: TargetReading, status: FeatureRolloutStatus) -> str:
    """`Target:   HTTPRoute shop/shop rule 0 holds 25% (checkout-new 25, checkout 75)`."""
    if reading.error:
        return f"Target:   {reading.where}: cannot read it back: {reading.error}"
    if not reading.reads_back:
        return (f"Target:   {reading.where} (no read-back: the service has no read contract; it last "
                f"acknowledged {_pct(status.current_weight)} as far as the status knows)")
    held = "holds no entry for the flag (0%)" if reading.weight is None else f"holds {_pct(reading.weight)}"
    line = f"Target:   {reading.where} {held}" + (f" ({reading.detail})" if reading.detail else "")
    if (reading.weight or 0.0) != status.current_weight:
        line += f"; differs from the status's {_pct(status.current_weight)} (edited by hand?)"
    return line


def gate_lines(status: FeatureRolloutStatus, now: datetime) -> list[str]:
    """The gate waited at, since when, and why it is closed; then the gates that opened."""
    lines: list[str] = []
    wait = status.gate
    if status.phase == Phase.WAITING and wait is not None:
        since = wait.since.isoformat(timespec="seconds").replace("+00:00", "Z")
        lines.append(f"Gate:     waiting for {wait.kind} gate {wait.name!r} {point_words(wait.before)} since "
                     f"{since} ({format_duration(now - wait.since)} ago)"
                     + (", past its timeout" if wait.timed_out else ""))
        if wait.message:
            lines.append(f"          {wait.message}")
    for record in status.opened_gates:
        at = record.at.isoformat(timespec="seconds").replace("+00:00", "Z")
        how = f": {record.message}" if record.message else ""
        lines.append(f"Opened:   gate {record.name!r} {point_words(record.before)} at {at}{how}")
    return lines


def render(body: dict[str, Any], now: datetime, target: TargetReading | None = None) -> str:
    """The whole status view of one FeatureRollout object (with what its target holds, if read)."""
    rollout = read_object(body)
    where = f"{rollout.namespace}/{rollout.name}"
    if rollout.spec is None:
        return f"FeatureRollout {where}: {rollout.invalid}"
    spec, status = rollout.spec, rollout.status
    lines = [
        f"FeatureRollout {where}    flag {spec.flag}    target {spec.target.kind}",
        f"Phase:    {status.phase.value}",
        f"Stage:    {stage_of(spec, status)} at {_pct(status.current_weight)}",
    ]
    if target is not None:
        lines.append(target_line(target, status))
    left = time_left(spec, status, now)
    if left:
        lines.append(f"Left:     {left}")
    if status.manual_pause or spec.paused:
        by = "featurerollout pause" if status.manual_pause else "spec.paused"
        lines.append(f"Paused:   by {by}")
    lines += gate_lines(status, now)
    lines += ["", progress_bar(spec, status, now), ""]
    if spec.analysis is not None:
        # The values are those of lastAnalysisAt, which an operator run with --analysis-status-every
        # may record up to that long after it (when no verdict changed): say how old they are.
        as_of = ("" if status.last_analysis_at is None
                 else f", as of {max(0, round((now - status.last_analysis_at).total_seconds()))}s ago")
        interval = analysis_interval(spec)
        assert interval is not None  # spec.analysis is set
        lines.append(f"Metrics (every {interval.text}, onNoData {spec.analysis.on_no_data.value}{as_of}):")
        rows = [("NAME", "VALUE", "BUDGET", "RESULT", "FAILURES")]
        seen = {m.name: m for m in status.metrics}
        for metric in spec.analysis.metrics:
            got = seen.get(metric.name)
            value = "-" if got is None or got.value is None else f"{got.value:.4g}"
            if metric.compare is not None and got is not None and got.value is not None:
                value = (f"{got.value:.3g}x" if metric.compare.max_ratio is not None
                         else f"{got.value * 100:+.3g} pt")
            result = "-" if got is None else got.result.value
            failures = f"{0 if got is None else got.consecutive_failures}/{_limit(spec, metric.name)}"
            rows.append((metric.name, value, _budget(spec, metric.name), result, failures))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows]
        compared = {m.name for m in spec.analysis.metrics if m.compare is not None}
        for observed in status.metrics:
            if observed.name in compared and observed.message:
                # both arms' rates and sample sizes, and the evidence in words
                lines.append(f"  {observed.name}: {observed.message}")
            elif observed.message and observed.result.value in ("Error", "NoData"):
                lines.append(f"  {observed.name}: {observed.message}")
        lines.append("")
    if status.message:
        lines.append(f"Message:  {status.message}")
    if status.conditions:
        lines.append("Conditions: " + ", ".join(
            f"{c.type}={c.status.value} ({c.reason})" for c in status.conditions
        ))
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a rollout's stage, weight, time left and metrics against their budgets",
        description="Show a FeatureRollout: its phase, stage and weight, the time left in the stage, "
        "each metric's last value against its budget, and a progress bar across the stages.",
    )
    add_target_arguments(parser)
    parser.add_argument("-w", "--watch", action="store_true",
                        help="refresh until the rollout is finished (Succeeded, Failed, or RolledBack "
                        "with the 0%% written)")
    parser.add_argument("--interval", type=float, default=1.0, help="refresh interval with --watch (default 1s)")
    parser.add_argument("--timeout", type=float, default=0, help="with --watch, give up after this many seconds")
    parser.set_defaults(func=status_command)


def status_command(args: argparse.Namespace) -> int:
    api, namespace = client_for(args)
    where = f"featurerollout {namespace}/{args.name}"
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    tty = sys.stdout.isatty()
    last = ""
    kube = Kube()  # the same kubeconfig, which client_for() loaded
    try:
        return _show(args, api, kube, namespace, where, deadline, tty, last)
    finally:
        kube.close()


def _reading(kube: Kube, namespace: str, body: dict[str, Any]) -> TargetReading | None:
    name = str(body.get("metadata", {}).get("name", ""))
    try:
        spec = parse_spec(body.get("spec") or {}, name)
    except InvalidFeatureRollout:
        return None
    return asyncio.run(read_target(kube, namespace, name, spec))


def _show(args: argparse.Namespace, api: Any, kube: Kube, namespace: str, where: str, deadline: float | None,
          tty: bool, last: str) -> int:
    while True:
        try:
            body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
        except Exception as error:
            print(f"error: {explain_api_error(error, where)}", file=sys.stderr)
            return 1
        view = render(body, datetime.now(UTC), _reading(kube, namespace, body))
        if view != last:
            if tty and args.watch:
                print("\033[H\033[2J", end="")
            elif last:
                print("---")
            print(view, flush=True)
            last = view
        phase = (body.get("status") or {}).get("phase")
        if not args.watch or settled(body.get("status") or {}):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"{where}: still {phase} after {args.timeout:g}s", file=sys.stderr)
            return 2
        time.sleep(args.interval)
