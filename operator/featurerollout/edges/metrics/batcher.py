"""One round of queries for every rollout due at the same moment (the edge; metrics/grouping.py decides).

Rollouts due within `window` seconds of each other hand their queries to one round per Prometheus
(the same address, timeout, headers and credentials). The round then sends:

- each distinct query text once, however many rollouts asked it (identical rendered queries);
- for a query shape that differs only in `{{flag}}` (grouping.shape_of accepts it) and is asked for
  two or more flags, ONE query grouped `by (label)` whose series for each flag answer that flag's
  rollouts; a flag outside grouping.batchable_flag, or a shape asked for one flag only, is sent on
  its own;
- if a grouped query fails (an error, a timeout, an unexpected answer), each of its flags' own
  queries are sent instead, so that an error is reported in the words of the rollout's own query.

Every answer is the one the rollout's own query would have given at that moment: the conditions
are in grouping.py, and tests/edges/metrics/test_query_batching.py compares both on a real Prometheus.

Each ask carries the instant it is evaluated at (the look's instant, sent as Prometheus's `time`, so
that `featurerollout simulate` can ask the same question later); only asks at the same instant share
a query. So that rollouts due together still do, `QueryBatcher.instant` hands every look that starts
within `window` of the first one that instant.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement
from featurerollout.edges.http_bodies import MAX_ANSWER_BYTES
from featurerollout.edges.metrics.grouping import NotBatchable, Shape, batchable_flag, shape_of
from featurerollout.edges.metrics.prometheus import PrometheusCredentials, PrometheusMetricProvider

# How long the first query of a round waits for the others due at the same moment. It adds to the
# analysis lag (due -> evaluated), whose goal is p99 < 1 s.
WINDOW_SECONDS = 0.1
# Providers kept (one HTTP session, and a CA file in /tmp when the credentials hold one, per
# Prometheus and credentials): past this, the least recently used idle one is closed and its CA
# file deleted, so that many addresses or CAs cannot fill the pod's 64 Mi /tmp or its memory.
MAX_PROVIDERS = 64


@dataclass(frozen=True)
class Ask:
    """One rollout's query: its rendered text, and (for a `{{flag}}` template) the text rendered with
    grouping.SENTINEL for the flag, and the flag."""

    query: str
    shape: str | None = None
    flag: str | None = None
    at: datetime | None = None  # the instant to evaluate at; None: Prometheus's now


@dataclass(frozen=True)
class Plan:
    """Pure: what one round sends. `plain`: distinct query texts; `grouped`: (shape, flags)."""

    plain: tuple[str, ...]
    grouped: tuple[tuple[Shape, tuple[str, ...]], ...]


def plan_round(asks: list[Ask]) -> Plan:
    """Pure: the fewest queries that answer every ask exactly (see the module's docstring)."""
    by_shape: dict[str, set[str]] = defaultdict(set)
    plain: dict[str, None] = {}
    for ask in asks:
        if ask.shape is not None and ask.flag is not None and batchable_flag(ask.flag):
            by_shape[ask.shape].add(ask.flag)
        else:
            plain[ask.query] = None
    grouped: list[tuple[Shape, tuple[str, ...]]] = []
    shapes_alone = {shape for shape, flags in by_shape.items() if len(flags) < 2}
    for text, flags in by_shape.items():
        if text in shapes_alone:
            continue
        try:
            grouped.append((shape_of(text), tuple(sorted(flags))))
        except NotBatchable:
            shapes_alone.add(text)
    for ask in asks:
        if ask.shape in shapes_alone or (ask.shape is not None and ask.flag is not None
                                         and not batchable_flag(ask.flag)):
            plain[ask.query] = None
    return Plan(tuple(plain), tuple(grouped))


@dataclass
class _Round:
    asks: list[tuple[Ask, asyncio.Future[Measurement]]] = field(default_factory=list)


@dataclass
class QueryBatcher:
    """Operator-wide: gathers the queries due together, per Prometheus, into rounds."""

    window: float = WINDOW_SECONDS
    max_providers: int = MAX_PROVIDERS
    _rounds: dict[Hashable, _Round] = field(default_factory=dict)
    # Least recently used first; a provider a look holds (`_held`: measuring with it) is never closed.
    _providers: OrderedDict[Hashable, PrometheusMetricProvider] = field(default_factory=OrderedDict)
    _held: Counter[Hashable] = field(default_factory=Counter)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _instant: datetime | None = None

    def instant(self, now: datetime) -> datetime:
        """The instant a look that starts at `now` evaluates its queries at: the instant of the
        looks that started less than `window` seconds before it (so that they share a round's
        queries), else `now`. Never later than `now`."""
        if self._instant is not None and timedelta(0) <= now - self._instant < timedelta(seconds=self.window):
            return self._instant
        self._instant = now
        return now

    def provider(self, key: Hashable, make: Any) -> PrometheusMetricProvider:
        """One provider (one HTTP session, its connections kept alive) per Prometheus and credentials,
        at most `max_providers` of them: the least recently used idle ones are closed beyond that.
        The provider is held (never closed) until `release(key)`: a look holds it while it measures."""
        provider = self._providers.get(key)
        if provider is not None:
            self._providers.move_to_end(key)
        else:
            provider = self._providers[key] = make()
        self._held[key] += 1
        self._evict()
        return provider

    def release(self, key: Hashable) -> None:
        """A look is done with the provider of `key`; idle, it may now be evicted."""
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
            self._evict()

    def _evict(self) -> None:
        """Close (and so delete the CA file of) the least recently used providers past the bound,
        skipping any a look holds: such a one goes once it is released, if still past the bound."""
        excess = len(self._providers) - self.max_providers
        for key in [k for k in self._providers if not self._held[k]][:max(0, excess)]:
            self._providers.pop(key).close()

    async def ask(self, key: Hashable, provider: PrometheusMetricProvider, ask: Ask) -> Measurement:
        round_ = self._rounds.get(key)
        if round_ is None:
            round_ = self._rounds[key] = _Round()
            task = asyncio.get_running_loop().create_task(self._run(key, provider, round_))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        done: asyncio.Future[Measurement] = asyncio.get_running_loop().create_future()
        round_.asks.append((ask, done))
        return await done

    async def _run(self, key: Hashable, provider: PrometheusMetricProvider, round_: _Round) -> None:
        try:
            await asyncio.sleep(self.window)
        finally:
            if self._rounds.get(key) is round_:
                del self._rounds[key]  # later asks start the next round
        asks = [ask for ask, _ in round_.asks]
        try:
            answers = await answer_round(provider, asks)
        except BaseException as error:
            for _, done in round_.asks:
                if not done.done():
                    done.set_result(Measurement.error(f"{type(error).__name__}: {error}"))
            raise
        for ask, done in round_.asks:
            if not done.done():
                done.set_result(answers[ask])

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


async def answer_round(provider: PrometheusMetricProvider, asks: list[Ask]) -> dict[Ask, Measurement]:
    """Send the round's plan and hand each ask its answer: one plan per instant asked about."""
    by_instant: dict[datetime | None, list[Ask]] = defaultdict(list)
    for ask in asks:
        by_instant[ask.at].append(ask)
    out: dict[Ask, Measurement] = {}
    for answers in await asyncio.gather(*(_answer_at(provider, group, at) for at, group in by_instant.items())):
        out.update(answers)
    return out


async def _answer_at(
    provider: PrometheusMetricProvider, asks: list[Ask], at: datetime | None
) -> dict[Ask, Measurement]:
    plan = plan_round(asks)
    plain_answers: dict[str, Measurement] = {}
    by_flag: dict[tuple[str, str], Measurement] = {}

    async def plain(query: str) -> None:
        plain_answers[query] = await provider.measure(query, at)

    async def grouped(shape: Shape, flags: tuple[str, ...]) -> None:
        answers = await provider.measure_grouped(shape.grouped(list(flags)), shape.label, flags, at)
        if answers is None:  # the grouped query failed: each flag's own query says why
            return
        for flag, measurement in answers.items():
            by_flag[(shape.query, flag)] = measurement

    await asyncio.gather(*(plain(q) for q in plan.plain), *(grouped(s, f) for s, f in plan.grouped))
    missing = [ask.query for ask in asks
               if ask.query not in plain_answers and (ask.shape or "", ask.flag or "") not in by_flag]
    if missing:
        await asyncio.gather(*(plain(q) for q in dict.fromkeys(missing)))
    out: dict[Ask, Measurement] = {}
    for ask in asks:
        found = by_flag.get((ask.shape or "", ask.flag or ""))
        out[ask] = found if found is not None else plain_answers[ask.query]
    return out


@dataclass
class BatchedProvider:
    """One rollout's view of the operator's QueryBatcher, as a MetricProvider: its queries join the
    round of the Prometheus `key` names. It holds the shared provider until closed; closing it
    releases the provider to the batcher, which owns it (and closes it when it evicts it)."""

    batcher: QueryBatcher
    key: Hashable
    provider: PrometheusMetricProvider
    at: datetime | None = None  # the look's instant (QueryBatcher.instant); None: Prometheus's now
    released: bool = False

    async def measure(self, query: str) -> Measurement:
        return await self.batcher.ask(self.key, self.provider, Ask(query, at=self.at))

    async def measure_for_flag(self, query: str, shape: str, flag: str) -> Measurement:
        """`query` as rendered for this rollout, and `shape`: the same template rendered with
        grouping.SENTINEL for `{{flag}}`, so that rollouts differing only in their flag share a query."""
        return await self.batcher.ask(self.key, self.provider, Ask(query, shape, flag, self.at))

    async def query_at(self, query: str, at: datetime | None) -> Any:
        """Raw answers (an exact count's samples) are per rollout: asked directly, not batched."""
        return await self.provider.query_at(query, at)

    async def is_online(self) -> bool:
        return await self.provider.is_online()

    async def aclose(self) -> None:
        """Release the shared provider (the batcher closes it, once idle and least recently used)."""
        if not self.released:
            self.released = True
            self.batcher.release(self.key)


def batched_provider(
    batcher: QueryBatcher, where: PrometheusProvider, credentials: PrometheusCredentials | None,
    at: datetime | None = None, max_answer_bytes: int = MAX_ANSWER_BYTES,
) -> BatchedProvider:
    """A rollout's provider for one Prometheus, in the batcher's shared round for that server and
    credentials (one HTTP session each), its queries evaluated at `at`."""
    key = (where.model_dump_json(), credentials, max_answer_bytes)  # in memory only: credentials never leave it
    shared = batcher.provider(key, lambda: PrometheusMetricProvider(where, credentials,
                                                                    max_answer_bytes=max_answer_bytes))
    return BatchedProvider(batcher, key, shared, at)
