"""`featurerollout list [-A | -n NS] [-o wide|json]`: one line per rollout, like
`kubectl argo rollouts list rollouts`.

`rows()`, `table()` and `as_json()` are pure (object bodies + now -> text) and tested without a
cluster; `list_command()` only reads the objects and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.api import Phase
from featurerollout.commands.manual import add_kubeconfig_arguments, client_for, explain_api_error
from featurerollout.commands.presentation import human_duration, last_verdict, read_object, stage_of, target_brief
from featurerollout.core.engine import next_check
from featurerollout.core.messages import pct

# Longest LAST VERDICT a table shows; `-o json` has it whole, and `featurerollout status` explains it.
VERDICT_WIDTH = 72
CRD = f"{PLURAL}.{GROUP}"
CRD_MISSING = (
    f"the FeatureRollout CRD ({CRD}) is not installed on this cluster: install it with "
    "`kubectl apply -f crds/` or the Helm chart"
)


@dataclass(frozen=True)
class Row:
    """One rollout as `list` shows it."""

    namespace: str
    name: str
    phase: str
    weight: float
    stage: str
    in_stage: timedelta | None  # None when no stage is under way (not started, finished)
    verdict: str
    flag: str
    target: str
    next_check: datetime | None  # when the operator looks again at the latest; None: only on a change
    metrics: tuple[dict[str, Any], ...]  # the last evaluation of each metric, as in the status
    message: str


def row(body: dict[str, Any], now: datetime) -> Row:
    """The row of one FeatureRollout object."""
    rollout = read_object(body)
    status = rollout.status
    metrics = tuple((body.get("status") or {}).get("metrics") or ())
    if rollout.spec is None:  # listed with why, never hidden: the raw phase and weight, as stored
        raw = body.get("status") or {}
        weight = raw.get("currentWeight")
        return Row(rollout.namespace, rollout.name, str(raw.get("phase", "-")),
                   float(weight) if isinstance(weight, int | float) else 0.0, "-", None, rollout.invalid,
                   "-", "-", None, metrics, str(raw.get("message") or ""))
    spec = rollout.spec
    started = status.started_at is not None and status.phase != Phase.PENDING
    # Time in stage only while a stage is under way: a finished rollout's last stage is not running.
    stage_start = status.stage_started_at if started and status.phase in (Phase.PROGRESSING, Phase.PAUSED) else None
    return Row(
        namespace=rollout.namespace,
        name=rollout.name,
        phase=status.phase.value,
        weight=status.current_weight,
        stage=stage_of(spec, status) if started else "-",
        in_stage=None if stage_start is None else now - stage_start,
        verdict=last_verdict(spec, status),
        flag=spec.flag,
        target=target_brief(spec.target),
        next_check=next_check(spec, status, now),
        metrics=metrics,
        message=status.message or "",
    )


def rows(bodies: Iterable[dict[str, Any]], now: datetime) -> list[Row]:
    """The rows of many objects, by namespace then name."""
    return sorted((row(body, now) for body in bodies), key=lambda r: (r.namespace, r.name))


def _until(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return "now" if moment <= now else f"in {human_duration(moment - now)}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def table(found: Sequence[Row], now: datetime, *, all_namespaces: bool = False, wide: bool = False) -> str:
    """The rows as kubectl prints a table: upper-case headers, columns three spaces apart."""
    header = ["NAME", "PHASE", "WEIGHT", "STAGE", "TIME IN STAGE", "LAST VERDICT"]
    if wide:
        header += ["FLAG", "TARGET", "NEXT CHECK"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    lines = [header]
    for r in found:
        cells = [r.name, r.phase, pct(r.weight), r.stage, "-" if r.in_stage is None else human_duration(r.in_stage),
                 _clip(r.verdict, VERDICT_WIDTH)]
        if wide:
            cells += [r.flag, r.target, _until(r.next_check, now)]
        if all_namespaces:
            cells.insert(0, r.namespace)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def as_json(found: Sequence[Row]) -> str:
    """The rows for machines: `{"items": [...]}`, every field whole (no clipping, seconds as numbers)."""
    items = [
        {
            "namespace": r.namespace,
            "name": r.name,
            "phase": r.phase,
            "weight": r.weight,
            "stage": None if r.stage == "-" else r.stage,
            "timeInStageSeconds": None if r.in_stage is None else int(r.in_stage.total_seconds()),
            "lastVerdict": None if r.verdict == "-" else r.verdict,
            "metrics": list(r.metrics),
            "flag": r.flag,
            "target": r.target,
            "nextCheck": _rfc3339(r.next_check),
            "message": r.message,
        }
        for r in found
    ]
    return json.dumps({"items": items}, indent=2)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="one line per rollout: phase, weight, stage, time in stage, last metric verdict",
        description="List FeatureRollouts, one line each: phase, weight, stage (N/M), time in the stage, "
        "and the last verdict of its metrics (Passed, Failed with the value against the budget, NoData, "
        "Error). `-o wide` adds the flag, the target and when the operator looks next; `-o json` prints "
        "the same for machines.",
        epilog="examples: featurerollout list -n shop | featurerollout list -A -o wide | "
        "kubectl featurerollout list -A -o json. Exit code 0, or 1 when the API refused or could not be "
        "reached (the reason is printed).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="list this namespace (default: the kubeconfig context's, else "
                       "default)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")
    parser.add_argument("-o", "--output", choices=("wide", "json"), help="wide: add flag, target and next check; "
                        "json: machine-readable items")
    parser.add_argument("-l", "--selector", help="label selector, as kubectl takes it (e.g. team=shop)")
    add_kubeconfig_arguments(parser)
    parser.set_defaults(func=list_command)


def explain_list_error(error: Exception, where: str) -> str:
    """Why listing failed, in words: the CRD is missing, RBAC denies it, or the server's message."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(error, ApiException):  # no answer at all: a connection refused, a TLS failure
        return f"cannot reach the Kubernetes API to list rollouts in {where}: {error}"
    message = explain_api_error(error, where, not_found=CRD_MISSING)
    if error.status == 403:
        message += f" (listing rollouts needs the RBAC verb `list` on {CRD} in {where})"
    return message


def list_command(args: argparse.Namespace) -> int:
    from kubernetes.config import ConfigException

    try:
        api, namespace = client_for(args)
    except (ConfigException, OSError) as error:
        print(f"error: cannot load the kubeconfig: {error}", file=sys.stderr)
        return 1
    where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
    selector = args.selector or ""
    try:
        if args.all_namespaces:
            answer = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=selector)
        else:
            answer = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, label_selector=selector)
    except Exception as error:
        print(f"error: {explain_list_error(error, where)}", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    found = rows(answer.get("items") or [], now)
    if args.output == "json":
        print(as_json(found))
    elif not found:
        # kubectl's words, on stderr, so that a script reading stdout sees nothing
        print(f"No FeatureRollouts found in {where}.", file=sys.stderr)
    else:
        print(table(found, now, all_namespaces=args.all_namespaces, wide=args.output == "wide"))
    return 0
