"""`featurerollout simulate`: what a FeatureRollout would have done over a past stretch of time.

    featurerollout simulate -f rollout.yaml --prometheus URL --from -7d --to now [--step 1m] [--png out.png]

It replays the live decision, look by look. The rollout starts at `--from`; at every instant the
engine asks to look again (`engine.next_check`: each analysis interval, each stage's end), the
replay does what the operator does at a look:

 * it measures through the operator's own measuring path (`Measurer.measure`: the same query
   rendering, `{{interval}}`, `{{window}}` as the time since the simulated stage began, the same
   compare counting, the same providers), with every query evaluated by Prometheus AT that instant
   (the query API's `time` parameter): the answer the operator would have got then;
 * it hands those measurements to the same pure `engine.decide`, with the same facts (the status:
   stage, stage start, last analysis, consecutive failures).

The live operator evaluates its queries at its look's instant too and records it as the metrics'
`evaluatedAt`, so a replay that looks at the live run's instants (`replay(..., looks=, held=)`) asks
Prometheus exactly what the operator asked and decides the same (tests/commands/simulate/test_live_vs_replay.py).

Only time, weights and decisions are simulated; the metric values are what was recorded, which came
from whatever exposure was live at the time, not from the simulated weights. Gates are taken as
open. `--step` looks less often than the operator would (cheaper, no longer exact).

The replay loop (`replay`) decides with the pure engine and gets its numbers from an injected
`Measure` (the operator's measuring path in the command, any function in the tests); the command
(`run`) is the edge. `featurerollout.commands.simulate_picture` draws a Replay.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import yaml

from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    InvalidFeatureRollout,
    Metric,
    MetricResult,
    MetricStatus,
    ObjectMeta,
    Phase,
    PrometheusProvider,
    parse_duration,
    parse_spec,
)
from featurerollout.core import engine
from featurerollout.core.measurement import Measurement, MeasurementKind

__all__ = [
    "HONESTY_NOTE",
    "Evaluation",
    "Measure",
    "Moment",
    "Replay",
    "StageSpan",
    "add_parser",
    "load_rollout",
    "operator_measure",
    "parse_time",
    "queries_per_look",
    "replay",
]

HONESTY_NOTE = (
    "note: only time, weights and decisions are simulated; the metric values are what Prometheus "
    "recorded, under whatever exposure was live then, not under the simulated weights"
)
# Above this many queries the command refuses and names --step (and --max-queries).
MAX_QUERIES = 100_000
SIMULATE_EXTRA_MESSAGE = (
    "--png needs matplotlib, from the optional 'simulate' dependencies. Install them with:\n"
    "  pip install 'featurerollout[simulate]'\n"
    "or, from a checkout: pip install -e '.[simulate]' (`make install` does this)."
)

# What a look measures: (the status before the look, the look's instant) -> a Measurement per metric.
Measure = Callable[[FeatureRolloutStatus, datetime], Awaitable[Mapping[str, Measurement]]]


# --- the replay (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """One line of the timeline. `kind`: Started, StageAdvanced, Failed, RolledBack, Succeeded, ..."""

    at: datetime
    kind: str
    text: str


@dataclass(frozen=True)
class Evaluation:
    """One look that measured: when, at which weight and stage (before the look), each metric's
    verdict, and the whole status the look left (what the operator would have written)."""

    at: datetime
    weight: float
    stage: int
    metrics: tuple[MetricStatus, ...]
    after: FeatureRolloutStatus | None = None


@dataclass(frozen=True)
class StageSpan:
    """A stage as simulated: from when its weight was set until the next change (None: the end)."""

    stage: int
    weight: float
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Replay:
    """What the rollout would have done."""

    spec: FeatureRolloutSpec
    start: datetime
    end: datetime
    phase: Phase  # at the end: Succeeded, RolledBack, Paused (halted), or still Progressing
    finished_at: datetime | None
    message: str
    timeline: tuple[Moment, ...]
    evaluations: tuple[Evaluation, ...]
    stages: tuple[StageSpan, ...]

    @property
    def rolled_back_at(self) -> datetime | None:
        return self.finished_at if self.phase == Phase.ROLLED_BACK else None

    def weight_steps(self) -> list[tuple[datetime, float]]:
        """(moment, weight) at every change, for a step plot; 0 from the rollback on."""
        steps = [(span.start, span.weight) for span in self.stages]
        if self.rolled_back_at is not None:
            steps.append((self.rolled_back_at, 0.0))
        return steps


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _failed_words(metric: Metric, status: MetricStatus) -> str:
    tolerated = f"failure {status.consecutive_failures}, failureLimit {metric.failure_limit}"
    if metric.compare is not None:
        return f"{metric.name} failed: {status.message} ({tolerated})"
    value = "no data" if status.value is None else f"{status.value:g}"
    return f"{metric.name} {value} vs budget {metric.budget()}: failed ({tolerated})"


def queries_per_look(spec: FeatureRolloutSpec) -> int:
    """How many instant queries one look makes: one per query metric, four per compare metric."""
    metrics = spec.analysis.metrics if spec.analysis is not None else []
    return sum(4 if metric.compare is not None else 1 for metric in metrics)


def planned_looks(spec: FeatureRolloutSpec, start: datetime, end: datetime, step: timedelta | None) -> int:
    """About how many looks a replay from `start` to `end` makes (analysis intervals, or steps, plus
    one per stage for its end), for the bound printed and enforced before it starts."""
    every = step if step is not None else (spec.analysis.every if spec.analysis is not None else end - start)
    return int((end - start) / max(every, timedelta(seconds=1))) + 1 + len(spec.stages)


async def replay(
    spec: FeatureRolloutSpec,
    measure: Measure,
    *,
    start: datetime,
    end: datetime,
    step: timedelta | None = None,
    looks: Sequence[datetime] | None = None,
    held: Mapping[int, datetime] | None = None,
    progress: Callable[[datetime, int], None] | None = None,
) -> Replay:
    """Run the engine from `start` to `end` as the operator would have, measuring through `measure`.

    The looks fall where the engine asks for them (`engine.next_check`), or, with `looks` (a live
    run's looks that measured), exactly at those instants and at those of `held`. A stage's weight
    is taken to hold from the decision's instant, or, with `held` (stage index -> instant, a live
    run's stageStartedAt), from when the live target held it. `step`: no look comes sooner than this
    after the previous one (a coarser, cheaper replay).
    `progress`, when given, is called with the simulated time and the number of looks now and then.
    """
    # Gates (spec.gates) are taken to open at once: no person approves and no webhook answers in
    # the past; the replay shows what the budgets would have done to the ramp.
    spec = spec.model_copy(update={"gates": None})
    status = FeatureRolloutStatus()
    measured = set(looks) if looks is not None else None
    # With the live run's instants: its looks that measured, and those that held a stage (a promotion
    # decided between two analysis looks is replayed at the instant the target held it).
    schedule = iter(sorted(measured | set((held or {}).values()))) if measured is not None else None
    now = next(schedule, start) if schedule is not None else start
    timeline: list[Moment] = []
    evaluations: list[Evaluation] = []
    stages: list[StageSpan] = []
    metrics = {m.name: m for m in spec.analysis.metrics} if spec.analysis is not None else {}
    bound = len(looks) + len(held or {}) if looks is not None else 2 * planned_looks(spec, start, end, step) + 10
    every = max(200, bound // 40)
    for count in range(1, bound + 1):
        due = engine.analysis_due(spec, status, now) and (measured is None or now in measured)
        measurements = dict(await measure(status, now)) if due else None
        before = status
        decision = engine.decide(spec, status, generation=1, now=now, measurements=measurements)
        if held and decision.status.current_stage in held:
            # The live target held this stage's weight from then (reconciler: engine.settle).
            written = engine.WriteOutcome.applied(held[decision.status.current_stage])
            decision = engine.settle(spec, before, decision, written, generation=1, now=now)
        status = decision.status
        if measurements is not None:
            evaluations.append(Evaluation(now, before.current_weight, before.current_stage,
                                          tuple(m for m in status.metrics if m.evaluated_at == now), status))
            for current in status.metrics:
                if current.evaluated_at == now and current.result == MetricResult.FAILED:
                    timeline.append(Moment(now, "Failed", _failed_words(metrics[current.name], current)))
        for action in decision.actions:
            if isinstance(action, engine.EmitEvent) and action.reason != "AnalysisFailing":
                timeline.append(Moment(now, action.reason, action.message))
        if status.phase in (Phase.PROGRESSING, Phase.PAUSED) and (
            not stages or stages[-1].stage != status.current_stage
        ):
            if stages:
                stages[-1] = StageSpan(stages[-1].stage, stages[-1].weight, stages[-1].start, now)
            stages.append(StageSpan(status.current_stage, status.current_weight,
                                    status.stage_started_at or now, None))
        if status.terminal and stages and stages[-1].end is None:
            stages[-1] = StageSpan(stages[-1].stage, stages[-1].weight, stages[-1].start, now)
        if progress is not None and count % every == 0:
            progress(now, count)
        if status.terminal or status.halt is not None:
            break  # a person would have to act now: the simulation ends here
        if schedule is not None:
            following = next(schedule, None)
        else:
            following = engine.next_check(spec, status, now)
            if following is not None and step is not None:
                following = max(following, now + step)
        if following is None or following > end:
            break
        now = max(following, now)
    return Replay(
        spec=spec, start=start, end=end, phase=status.phase, finished_at=status.finished_at,
        message=status.message or "", timeline=tuple(timeline), evaluations=tuple(evaluations),
        stages=tuple(stages),
    )


def summary(result: Replay) -> str:
    """The last line: where the rollout would have ended."""
    if result.phase == Phase.ROLLED_BACK and result.finished_at is not None:
        return f"would have ROLLED BACK at {_when(result.finished_at)}: {result.message}"
    if result.phase == Phase.SUCCEEDED and result.finished_at is not None:
        return f"would have SUCCEEDED at {_when(result.finished_at)}"
    if result.phase == Phase.PAUSED:
        return f"would have PAUSED for a person: {result.message}"
    return f"still {result.phase} at the end of the range ({_when(result.end)}): {result.message}"


def timeline_text(result: Replay) -> list[str]:
    """The timeline, one line per moment."""
    return [f"{_when(m.at)}  {m.kind:<14} {m.text}" for m in result.timeline]


# --- times -------------------------------------------------------------------------------------

_RELATIVE_RE = re.compile(r"^-(\d+(?:\.\d+)?)([smhdw])$")
_RELATIVE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: datetime) -> datetime:
    """RFC 3339 (`2026-11-23T00:00:00Z`), `now`, or relative to now: `-7d`, `-36h`, `-30m`, `-2w`."""
    if text == "now":
        return now
    match = _RELATIVE_RE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _RELATIVE_UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use RFC 3339 (2026-11-23T00:00:00Z), now, or -7d, -36h, -30m")\
            from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z (UTC) or an offset such as +01:00")
    return moment


# --- measuring as the operator does (I/O) ------------------------------------------------------


def operator_measure(spec: FeatureRolloutSpec, *, address: str, name: str, namespace: str,
                     timeout: str | None = None) -> Measure:
    """A Measure that asks Prometheus at `address` through the operator's own measuring path
    (`Measurer.measure`, as the reconciler's looks do), every query evaluated at the look's instant.
    No Secret is read: the spec's `prometheus.auth` is dropped (give a URL that needs none, e.g. a
    port-forward)."""
    from featurerollout.edges.kube import Kube
    from featurerollout.edges.metrics.measurer import Measurer

    analysis = spec.analysis
    assert analysis is not None
    where = (analysis.prometheus or PrometheusProvider(address=address)).model_copy(
        update={"address": address, "auth": None, **({"timeout": timeout} if timeout else {})})
    measured = spec.model_copy(update={"analysis": analysis.model_copy(update={"prometheus": where})})
    # Without auth and without templates (refused by the command) the measuring path never calls the
    # API server: no cluster is needed to replay.
    measurer = Measurer(kube=cast(Kube, None))
    meta = ObjectMeta(name=name, namespace=namespace)

    async def measure(status: FeatureRolloutStatus, at: datetime) -> Mapping[str, Measurement]:
        return await measurer.measure(measured, meta, status, at=at)

    return measure


async def reachable(address: str, at: datetime, timeout: str) -> str | None:
    """Why Prometheus at `address` cannot answer a query at `at` (None: it can)."""
    from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider

    provider = PrometheusMetricProvider(PrometheusProvider(address=address, timeout=timeout), at=at)
    try:
        answer = await provider.measure("vector(1)")
    finally:
        await provider.aclose()
    return answer.detail if answer.kind == MeasurementKind.ERROR else None


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
    if step is not None and step <= spec.analysis.every:
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
    every = step or spec.analysis.every
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
        from featurerollout.commands.simulate_picture import draw

        draw(result, args.png)
        print(f"picture: {args.png}")
    return 0
