"""Pure: is a status worth writing, when all that changed is how fresh the analysis is?

Under analysis every evaluation changes the status: `lastAnalysisAt`, each metric's `evaluatedAt`
and `value`, and the words that quote the values. With 1,000 rollouts at a 10 s interval that is
100 status writes a second to the API server, although most evaluations change no verdict.

What is written at once, at every evaluation that changes it (everything a decision or a person
acts on): the phase, weight, stage, halt, conditions' status and reason, and per metric its
`result`, `consecutiveFailures`, `consecutiveErrors`, and whether it was evaluated at the current
weight (after `stageStartedAt`, which the engine's promotion needs). Everything else is kept.

What may wait (`--analysis-status-every SECONDS`, 0 = never wait, the default): an evaluation whose
only changes are `lastAnalysisAt`, the metrics' `evaluatedAt`, `value`, `message`, `treatment`,
`control`, the status `message` and the conditions' `message` is written only once the stored
`lastAnalysisAt` is old enough: between half of and all of SECONDS, by a share fixed per rollout
(`write_spread`, a stable hash of its name). Why the spread: rollouts created or
caught up together would otherwise all write in the same few seconds of every period, and that
burst of writes (and of watch events back) is what made the analysis late at 1,000 rollouts
(docs/benchmarks.md); spread, the same writes come at an even rate. The stored status stays internally consistent: its
values, words and `lastAnalysisAt` are those of one evaluation, and `featurerollout status` shows
that moment ("analysed 40s ago"), so it never claims a freshness it has not got. Nothing the
operator needs is lost by waiting: the counts are written when they change, and after a restart a
stale `lastAnalysisAt` only makes the next evaluation come at once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

VOLATILE = ("lastAnalysisAt", "message")
VOLATILE_METRIC = ("value", "evaluatedAt", "message", "treatment", "control")


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def verdict(status: dict[str, Any]) -> dict[str, Any]:
    """The status without what only says how fresh the analysis is (see the module's docstring)."""
    stage_started = _moment(status.get("stageStartedAt"))
    out = {key: value for key, value in status.items() if key not in VOLATILE}
    metrics = []
    for metric in status.get("metrics") or []:
        kept = {key: value for key, value in metric.items() if key not in VOLATILE_METRIC}
        evaluated = _moment(metric.get("evaluatedAt"))
        kept["atCurrentWeight"] = evaluated is not None and (stage_started is None or evaluated > stage_started)
        metrics.append(kept)
    if "metrics" in status:
        out["metrics"] = metrics
    if "conditions" in status:
        out["conditions"] = [{k: v for k, v in c.items() if k != "message"} for c in status.get("conditions") or []]
    return out


def write_spread(namespace: str, name: str) -> float:
    """This rollout's share of `--analysis-status-every`, in [0.5, 1): the same in every process.
    Not the shards' hash (sharding.rollout_hash): within one shard that falls in a narrow slice,
    and the shard's rollouts would be spread over that slice of the period only."""
    digest = hashlib.sha256(f"status-writes:{namespace}/{name}".encode()).digest()
    return 0.5 + 0.5 * int.from_bytes(digest[:8], "big") / 2**64


def worth_writing(
    stored: dict[str, Any], decided: dict[str, Any], now: datetime, every: timedelta, spread: float = 1.0
) -> bool:
    """Whether to write `decided` over `stored` (both as on the wire): always when a verdict changed
    or `every` is zero; otherwise only once the stored analysis is `every` x `spread` old."""
    if every <= timedelta(0) or verdict(stored) != verdict(decided):
        return True
    last = _moment(stored.get("lastAnalysisAt"))
    return last is None or now - last >= every * spread
