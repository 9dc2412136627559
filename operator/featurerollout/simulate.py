"""`featurerollout simulate`: what a FeatureRollout would have done over a past stretch of time.

    featurerollout simulate -f rollout.yaml --prometheus URL --from -7d --to now [--step 1m] [--png out.png]

It replays the SAME pure engine (`engine.decide`) over simulated time: the rollout starts at
`--from`, and at every instant the engine asks to look again (`engine.next_check`) it gets the
measurements that Prometheus recorded then (`query_range` history, fetched once up front).
Only time, weights and decisions are simulated; the metric values are what was recorded, which
came from whatever exposure was live at the time, not from the simulated weights.

 * A metric with `query`: its value at an evaluation is the recorded sample at that instant (the
   latest grid point at or before it). `{{window}}` is rendered as the step.
 * A metric with `compare`: each of its four counting queries is fetched with `{{window}}` rendered
   as the step, so that each sample counts the requests of one step; the counts over the stage so
   far (what the operator's `{{window}}` asks for) are the sum of the samples after the stage began,
   up to the evaluation. The verdict is then the engine's own (`guardrail.compare_status`).

The replay (`replay`) is pure: a spec and a `History` in, a `Replay` out. The fetching (`fetch_history`)
and the command (`run`) are the edges. `featurerollout.simulate_picture` draws a Replay.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from featurerollout import engine
from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    InvalidFeatureRollout,
    Metric,
    MetricResult,
    MetricStatus,
    Phase,
    parse_duration,
    parse_spec,
)
from featurerollout.measurement import Measurement
from featurerollout.metrics.compare import compare_queries, counts_measurement
from featurerollout.metrics.queries import render_query

__all__ = [
    "HONESTY_NOTE",
    "Evaluation",
    "Grid",
    "History",
    "Moment",
    "Replay",
    "StageSpan",
    "add_parser",
    "fetch_history",
    "parse_time",
    "replay",
]

HONESTY_NOTE = (
    "note: only time, weights and decisions are simulated; the metric values are what Prometheus "
    "recorded, under whatever exposure was live then, not under the simulated weights"
)
# Prometheus refuses a query_range of more than 11,000 points per series: fetch in chunks below it.
MAX_POINTS_PER_QUERY = 10_000
SIMULATE_EXTRA_MESSAGE = (
    "--png needs matplotlib, from the optional 'simulate' dependencies. Install them with:\n"
    "  pip install 'featurerollout[simulate]'\n"
    "or, from a checkout: pip install -e '.[simulate]' (`make install` does this)."
)


# --- the recorded history ----------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The instants Prometheus was asked for: start, start + step, ..., `points` of them."""

    start: datetime
    step: timedelta
    points: int

    def time(self, index: int) -> datetime:
        return self.start + self.step * index

    @property
    def end(self) -> datetime:
        return self.time(self.points - 1)

    def at_or_before(self, moment: datetime) -> int:
        """The index of the latest grid point at or before `moment` (-1: before the grid)."""
        if moment < self.start:
            return -1
        return min(self.points - 1, int((moment - self.start) / self.step))


Samples = Sequence[float | None]  # one per grid point; None: nothing recorded there


@dataclass(frozen=True)
class History:
    """What Prometheus recorded, on one grid: the samples of each query metric (by name), and of
    each compare metric's four counting queries (by name, then by path `compare.treatment.errors`...),
    each sample counting one step's requests."""

    grid: Grid
    values: Mapping[str, Samples] = field(default_factory=dict)
    counts: Mapping[str, Mapping[str, Samples]] = field(default_factory=dict)


def measure_at(spec: FeatureRolloutSpec, history: History, status: FeatureRolloutStatus,
               now: datetime) -> dict[str, Measurement]:
    """Each metric's Measurement at `now`, from the history, as the operator would have measured it."""
    assert spec.analysis is not None
    grid = history.grid
    index = grid.at_or_before(now)
    out: dict[str, Measurement] = {}
    for metric in spec.analysis.metrics:
        if metric.compare is None:
            samples = history.values.get(metric.name, ())
            value = samples[index] if 0 <= index < len(samples) else None
            out[metric.name] = (Measurement.no_data(f"nothing recorded at {_when(now)}") if value is None
                                else Measurement.of(value))
            continue
        # The stage so far: the steps that ended after the stage began, up to now.
        began = status.stage_started_at or grid.start
        first = grid.at_or_before(began) + 1
        values: dict[str, Measurement] = {}
        recorded_counts = history.counts.get(metric.name)
        if not recorded_counts:
            out[metric.name] = Measurement.no_data("no history was fetched for this comparison")
            continue
        for path, samples in recorded_counts.items():
            recorded = [v for v in samples[max(first, 0):index + 1] if v is not None and not math.isnan(v)]
            values[path] = (Measurement.of(math.fsum(recorded)) if recorded
                            else Measurement.no_data(f"nothing recorded since the stage began ({_when(began)})"))
        out[metric.name] = counts_measurement(values)
    return out


# --- the replay (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """One line of the timeline. `kind`: Started, StageAdvanced, Failed, RolledBack, Succeeded, ..."""

    at: datetime
    kind: str
    text: str


@dataclass(frozen=True)
class Evaluation:
    """One look at every metric: when, at which weight and stage, and each metric's verdict."""

    at: datetime
    weight: float
    stage: int
    metrics: tuple[MetricStatus, ...]


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


def replay(
    spec: FeatureRolloutSpec,
    history: History,
    *,
    start: datetime,
    end: datetime,
    progress: Callable[[datetime], None] | None = None,
) -> Replay:
    """Run the engine from `start` to `end` as the operator would have, on the recorded history.

    Every SetWeight is taken to apply at once (the target holds the weight from the decision's
    instant). `progress`, when given, is called with the simulated time now and then.
    """
    # Gates (spec.gates) are taken to open at once: no person approves and no webhook answers in
    # the past; the replay shows what the budgets would have done to the ramp.
    spec = spec.model_copy(update={"gates": None})
    status = FeatureRolloutStatus()
    now = start
    timeline: list[Moment] = []
    evaluations: list[Evaluation] = []
    stages: list[StageSpan] = []
    metrics = {m.name: m for m in spec.analysis.metrics} if spec.analysis is not None else {}
    # A bound on the loop: at most one look per second of simulated time, plus the stage changes.
    looks = int((end - start).total_seconds()) + 4 * len(spec.stages) + 10
    last_progress = start
    for _ in range(looks):
        measurements = measure_at(spec, history, status, now) if engine.analysis_due(spec, status, now) else None
        before = status
        decision = engine.decide(spec, status, generation=1, now=now, measurements=measurements)
        status = decision.status
        if measurements is not None:
            evaluations.append(Evaluation(now, before.current_weight, before.current_stage,
                                          tuple(m for m in status.metrics if m.evaluated_at == now)))
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
            stages.append(StageSpan(status.current_stage, status.current_weight, now, None))
        if status.terminal and stages and stages[-1].end is None:
            stages[-1] = StageSpan(stages[-1].stage, stages[-1].weight, stages[-1].start, now)
        if status.terminal or status.halt is not None:
            break  # a person would have to act now: the simulation ends here
        following = engine.next_check(spec, status, now)
        if following is None or following > end:
            break
        now = max(following, now)
        if progress is not None and now - last_progress >= timedelta(days=1):
            progress(now)
            last_progress = now
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


# --- fetching the history (I/O) ----------------------------------------------------------------


class FetchError(RuntimeError):
    """Prometheus could not give the history of a query (its own words kept)."""


def _query_range(client: httpx.Client, url: str, query: str, grid: Grid,
                 progress: Callable[[str], None] | None, label: str) -> list[float | None]:
    samples: list[float | None] = [None] * grid.points
    chunks = range(0, grid.points, MAX_POINTS_PER_QUERY)
    for number, first in enumerate(chunks, 1):
        last = min(grid.points, first + MAX_POINTS_PER_QUERY) - 1
        params = {"query": query, "start": f"{grid.time(first).timestamp():.3f}",
                  "end": f"{grid.time(last).timestamp():.3f}", "step": f"{grid.step.total_seconds():g}"}
        try:
            response = client.get(f"{url}/api/v1/query_range", params=params)
        except httpx.HTTPError as error:
            raise FetchError(f"Prometheus at {url} is unreachable: {error}") from None
        try:
            body: Any = response.json()
        except ValueError:
            raise FetchError(f"{url} answered HTTP {response.status_code}, not the Prometheus API: "
                             f"{response.text.strip()[:200]}") from None
        if body.get("status") != "success":
            raise FetchError(f"{label}: Prometheus refused the query ({body.get('errorType')}): {body.get('error')}")
        result = body["data"]["result"]
        if len(result) > 1:
            raise FetchError(f"{label}: the query returned {len(result)} series; it must yield one number: "
                             "aggregate it, e.g. sum(...)")
        for point in result[0]["values"] if result else ():
            index = grid.at_or_before(datetime.fromtimestamp(float(point[0]), UTC) + timedelta(microseconds=1))
            if 0 <= index < grid.points:
                samples[index] = float(point[1])
        if progress is not None and len(chunks) > 1:
            progress(f"fetched {label}: {number}/{len(chunks)}")
    return samples


def fetch_history(
    spec: FeatureRolloutSpec, url: str, grid: Grid, *, name: str, namespace: str,
    progress: Callable[[str], None] | None = None, timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> History:
    """Every metric's history over the grid, from Prometheus's query_range API."""
    assert spec.analysis is not None
    analysis = spec.analysis

    def render(template: str) -> str:
        return render_query(template, flag=spec.flag, name=name, namespace=namespace,
                            interval=analysis.interval, window=grid.step)

    values: dict[str, Samples] = {}
    counts: dict[str, dict[str, Samples]] = {}
    with httpx.Client(timeout=timeout, headers=dict(headers or {})) as client:
        for metric in analysis.metrics:
            if metric.compare is None:
                values[metric.name] = _query_range(client, url, render(metric.query or ""), grid, progress,
                                                   metric.name)
                continue
            counts[metric.name] = {
                path: _query_range(client, url, render(template), grid, progress, f"{metric.name} {path}")
                for path, template in compare_queries(metric.compare).items()
            }
            if progress is not None:
                progress(f"fetched {metric.name}")
    return History(grid, values, counts)


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
        description="Replay a FeatureRollout over a past stretch of time: the operator's own engine decides "
        "at every analysis interval, on the metric values Prometheus recorded then (query_range). Prints a "
        "timeline (stages entered, failed evaluations against their budgets, the rollback or the success) "
        "and, with --png, draws it. Only time, weights and decisions are simulated: the recorded values "
        "came from whatever exposure was live then.",
        epilog="Example: featurerollout simulate -f rollout.yaml --prometheus http://localhost:9090 "
        "--from -7d --to now --png week.png",
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
                        help="the resolution of the history fetched, Go-style (30s, 1m, 5m; default: "
                        "spec.analysis.interval)")
    parser.add_argument("--png", type=Path, metavar="FILE",
                        help="draw the simulation: one panel per metric against its budget, the stages, "
                        "the weight and the rollback (needs the 'simulate' extra: matplotlib)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="per-request timeout for Prometheus (default: 60)")
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
        step = parse_duration(args.step) if args.step else spec.analysis.every
    except ValueError as error:
        return _fail(f"--step: {error}")
    if step < timedelta(seconds=1):
        return _fail(f"--step: {args.step!r} is shorter than the minimum of 1s")
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
    grid = Grid(start, step, int((end - start) / step) + 1)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    say(f"fetching {len(spec.analysis.metrics)} metric(s) from {url}: {_when(start)} .. {_when(end)}, "
        f"step {step.total_seconds():g}s ({grid.points} points per series)")
    try:
        history = fetch_history(spec, url, grid, name=name, namespace=namespace, progress=say,
                                timeout=args.timeout)
    except (FetchError, ValueError) as error:
        return _fail(str(error))
    result = replay(spec, history, start=start, end=end,
                    progress=lambda moment: say(f"replayed up to {_when(moment)}"))
    print(f"simulating FeatureRollout {namespace}/{name} (flag {spec.flag}) from {_when(start)} to {_when(end)}")
    print(HONESTY_NOTE)
    for line in timeline_text(result):
        print(line)
    print(summary(result))
    if args.png is not None:
        from featurerollout.simulate_picture import draw

        draw(result, history, args.png)
        print(f"picture: {args.png}")
    return 0
