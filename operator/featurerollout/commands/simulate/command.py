"""`featurerollout simulate`: the command line, and the edge that runs a replay and prints it."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from featurerollout.api import (
    FeatureRolloutSpec,
    InvalidFeatureRollout,
    parse_duration,
    parse_spec,
)
from featurerollout.commands.simulate.history import operator_measure, parse_time, reachable
from featurerollout.commands.simulate.replay import (
    HONESTY_NOTE,
    _when,
    planned_looks,
    queries_per_look,
    replay,
    summary,
    timeline_text,
)
from featurerollout.core.measurement import analysis_interval

# Above this many queries the command refuses and names --step (and --max-queries).
MAX_QUERIES = 100_000
SIMULATE_EXTRA_MESSAGE = (
    "--png needs matplotlib, from the optional 'simulate' dependencies. Install them with:\n"
    "  pip install 'featurerollout[simulate]'\n"
    "or, from a checkout: pip install -e '.[simulate]' (`make install` does this)."
)


# --- the command -------------------------------------------------------------------------------


def load_rollout(path: Path) -> tuple[FeatureRolloutSpec, str, str]:
    """(spec, name, namespace) of the first FeatureRollout in a YAML file."""
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: {error}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "FeatureRollout":
            metadata = document.get("metadata") or {}
            name = str(metadata.get("name") or "rollout")
            spec = parse_spec(document.get("spec") or {}, name)
            return spec, name, str(metadata.get("namespace") or "default")
    raise ValueError(f"{path}: no FeatureRollout in the file (kind: FeatureRollout)")


def add_parser(subparsers: Any) -> None:
    """Register `featurerollout simulate`."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a FeatureRollout over Prometheus's recorded history: would it have rolled back?",
        description="Replay a FeatureRollout over a past stretch of time, look by look: at every analysis "
        "interval (and each stage's end) it asks Prometheus what the operator would have asked at that "
        "instant (the same rendered queries and windows, evaluated at that time) and lets the operator's own "
        "engine decide. Prints how many queries it will make, then a timeline (stages entered, failed "
        "evaluations against their budgets, the rollback or the success) and, with --png, draws it. Only "
        "time, weights and decisions are simulated: the recorded values came from whatever exposure was "
        "live then.",
        epilog="Example: featurerollout simulate -f rollout.yaml --prometheus http://localhost:9090 "
        "--from -7d --to now --step 10m --png week.png",
    )
    # `--from -7d`: argparse takes an argument that starts with "-" for an option unless it looks like
    # a negative number; teach this parser that a relative time is one (argparse has no public hook).
    parser._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?[smhdw]?$")
    parser.add_argument("-f", "--filename", required=True, type=Path, metavar="FILE",
                        help="a YAML file with a FeatureRollout (the first one in the file is used)")
    parser.add_argument("--prometheus", metavar="URL",
                        help="Prometheus's base URL (default: spec.analysis.prometheus.address)")
    parser.add_argument("--from", dest="start", required=True, metavar="TIME",
                        help="where the simulated rollout starts: RFC 3339 (2026-11-23T00:00:00Z), now, or "
                        "relative: -7d, -36h, -30m")
    parser.add_argument("--to", dest="end", default="now", metavar="TIME", help="where it ends (default: now)")
    parser.add_argument("--step", metavar="DURATION",
                        help="look no more often than this, Go-style (10m, 1h): fewer queries, no longer the "
                        "operator's exact decisions (default: every analysis interval, as the operator)")
    parser.add_argument("--max-queries", type=int, default=MAX_QUERIES, metavar="N",
                        help=f"refuse a replay that would make more instant queries than this (default: "
                        f"{MAX_QUERIES:,}); use --step or a shorter range")
    parser.add_argument("--png", type=Path, metavar="FILE",
                        help="draw the simulation: one panel per metric against its budget, the stages, "
                        "the weight and the rollback (needs the 'simulate' extra: matplotlib)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="per-query timeout for Prometheus (default: 60)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"featurerollout simulate: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        spec, name, namespace = load_rollout(args.filename)
    except InvalidFeatureRollout as invalid:
        return _fail(f"{args.filename}: {invalid}")
    except ValueError as error:
        return _fail(str(error))
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        start, end = parse_time(args.start, now), parse_time(args.end, now)
    except ValueError as error:
        return _fail(f"--from/--to: {error}")
    if end <= start:
        return _fail(f"--to ({_when(end)}) must be after --from ({_when(start)})")
    if spec.analysis is None:
        return _fail("spec.analysis is not set: without metrics the rollout progresses on time alone, "
                     "and there is nothing to replay")
    try:
        step = parse_duration(args.step) if args.step else None
    except ValueError as error:
        return _fail(f"--step: {error}")
    if step is not None and step < timedelta(seconds=1):
        return _fail(f"--step: {args.step!r} is shorter than the minimum of 1s")
    interval = analysis_interval(spec)
    assert interval is not None  # spec.analysis is set (above)
    if step is not None and step <= interval.every:
        step = None  # the operator looks at every interval anyway
    address = args.prometheus or (spec.analysis.prometheus.address if spec.analysis.prometheus else None)
    if address is None:
        return _fail("no Prometheus to ask: spec.analysis.prometheus is not set; give --prometheus URL")
    if any(metric.template_ref is not None for metric in spec.analysis.metrics):
        return _fail("spec.analysis.metrics uses templateRef, which simulate does not resolve yet: "
                     "write the template's query into the metric to replay it")
    url = address.rstrip("/")
    if args.png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _fail(SIMULATE_EXTRA_MESSAGE)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    looks = planned_looks(spec, start, end, step)
    per_look = queries_per_look(spec)
    every = step or interval.every
    say(f"replaying {_when(start)} .. {_when(end)} against {url}: about {looks:,} looks (one every "
        f"{every.total_seconds():g}s{'' if step else ', as the operator'}) x {per_look} instant queries = "
        f"about {looks * per_look:,} queries")
    if looks * per_look > args.max_queries:
        coarser = max(every * 2, (end - start) * per_look / max(args.max_queries, 1))
        return _fail(f"that is more than --max-queries ({args.max_queries:,}): look less often with --step "
                     f"(e.g. --step {max(1, round(coarser.total_seconds() / 60))}m), shorten --from/--to, or raise "
                     "--max-queries")
    timeout = f"{args.timeout:g}s"
    problem = asyncio.run(reachable(url, start, timeout))
    if problem is not None:
        return _fail(problem)
    measure = operator_measure(spec, address=url, name=name, namespace=namespace, timeout=timeout)
    result = asyncio.run(replay(
        spec, measure, start=start, end=end, step=step,
        progress=lambda moment, count: say(f"replayed up to {_when(moment)} ({count:,} of about {looks:,} looks)"),
    ))
    print(f"simulating FeatureRollout {namespace}/{name} (flag {spec.flag}) from {_when(start)} to {_when(end)}"
          + (f", looking every {every.total_seconds():g}s (--step: coarser than the operator)" if step else ""))
    print(HONESTY_NOTE)
    for line in timeline_text(result):
        print(line)
    print(summary(result))
    if args.png is not None:
        from featurerollout.commands.simulate.picture import draw

        draw(result, args.png)
        print(f"picture: {args.png}")
    return 0
