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
(`run`) is the edge. `picture` draws a Replay.

One module per reason to change: `replay` (the loop and what it finds), `history` (the times and the
measuring against Prometheus), `picture` (the PNG, with matplotlib from the `simulate` extra) and
`command` (the command line).
"""

from __future__ import annotations

from featurerollout.commands.simulate.command import add_parser, load_rollout, run
from featurerollout.commands.simulate.history import operator_measure, parse_time, reachable
from featurerollout.commands.simulate.replay import (
    HONESTY_NOTE,
    Evaluation,
    Measure,
    Moment,
    Replay,
    StageSpan,
    planned_looks,
    queries_per_look,
    replay,
    summary,
    timeline_text,
)

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
    "planned_looks",
    "queries_per_look",
    "reachable",
    "replay",
    "run",
    "summary",
    "timeline_text",
]
