"""The replay: the live decision, look by look, over a stretch of the past (pure but for the
injected `Measure`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from featurerollout.api import (
    FeatureRolloutSpec,
    FeatureRolloutStatus,
    Metric,
    MetricResult,
    MetricStatus,
    Phase,
)
from featurerollout.core import engine
from featurerollout.core.measurement import Measurement, analysis_interval

HONESTY_NOTE = (
    "note: only time, weights and decisions are simulated; the metric values are what Prometheus "
    "recorded, under whatever exposure was live then, not under the simulated weights"
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
    interval = analysis_interval(spec)
    every = step if step is not None else (interval.every if interval is not None else end - start)
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
