"""A long stage is counted exactly through a REAL Prometheus, with an answer bounded by its series, not
its samples: 100 counter series (25 pods x 2 variants x 2 codes) scraped every 15 s for a day hold
about 576,000 samples in the stage, more than twice compare.MAX_SAMPLES, the raw samples the operator
once read for every count. Backfilled with promtool as an app exports them: one pod restarts mid-stage
(its counters reset), one is replaced mid-stage (its series end hours before the look), one starts
mid-stage (its series are created at their first increment), and errors are rare enough that some
pods' error series appear only mid-stage. The counts equal what the app counted, and what the
operator read back is the summary's few rows plus the raw samples of the restarted pod's series."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featurerollout.api import PrometheusProvider
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics import compare
from featurerollout.edges.metrics.prometheus import PrometheusMetricProvider
from featurerollout.stats.sequential import Arm
from tests.stats.prometheus_counts import NEEDS_PROMETHEUS, compare_spec, operator_measures
from tests.support.history import backfill
from tests.support.prometheus import PrometheusServer, start_prometheus

pytestmark = NEEDS_PROMETHEUS

ORIGIN = datetime(2026, 9, 7, tzinfo=UTC)
SCRAPE = 15
SCRAPES = (24 * 3600 + 3600) // SCRAPE + 1  # 25 h of history
STAGE_START = ORIGIN + timedelta(minutes=30, seconds=7)
LOOK = STAGE_START + timedelta(hours=24)  # a one-day stage
PODS = 25
RESTARTED, RESTART_AT = 3, 10 * 3600 // SCRAPE  # right after this scrape its counters start from 0
GONE, GONE_AT = 7, 6 * 3600 // SCRAPE  # its last scrape, 18 h before the look
BORN, BORN_AT = 24, 5 * 3600 // SCRAPE  # nothing before this scrape: the pod did not exist
Key = tuple[int, str, str]  # (pod, variant, code)


def app_history(seed: int = 11) -> tuple[dict[Key, np.ndarray], dict[Key, list[tuple[int, int]]]]:
    """Per series: the requests counted in each scrape interval (index i: those after scrape i - 1, up
    to scrape i), and what a scrape every SCRAPE s saw of it: (unix seconds, value) from its first
    increment on, as long as its pod lives."""
    rng = np.random.default_rng(seed)
    counted: dict[Key, np.ndarray] = {}
    scraped: dict[Key, list[tuple[int, int]]] = {}
    for pod in range(PODS):
        alive = np.ones(SCRAPES, dtype=bool)
        if pod == GONE:
            alive[GONE_AT + 1:] = False
        if pod == BORN:
            alive[:BORN_AT] = False
        for variant, rps in (("on", 0.2), ("off", 2.0)):
            requests = rng.poisson(rps * SCRAPE, SCRAPES) * alive
            errors = rng.binomial(requests, 0.002)
            for code, counts in (("200", requests - errors), ("500", errors)):
                counts[0] = 0
                counted[(pod, variant, code)] = counts
                values = np.cumsum(counts)
                if pod == RESTARTED:
                    values[RESTART_AT + 1:] -= values[RESTART_AT]
                born = np.cumsum(counts > 0) > 0  # created at its first increment ...
                if pod == RESTARTED:  # ... and again after the restart
                    born[RESTART_AT + 1:] = np.cumsum(counts[RESTART_AT + 1:] > 0) > 0
                at = int(ORIGIN.timestamp()) + SCRAPE * np.arange(SCRAPES)
                scraped[(pod, variant, code)] = [
                    (int(t), int(v)) for t, v, keep in zip(at, values, born & alive, strict=True) if keep
                ]
    return counted, scraped


def app_counted(counted: dict[Key, np.ndarray], variant: str, errors_only: bool) -> int:
    """What the app counted for one arm in the stage: the scrape intervals after the last scrape at
    or before the stage's start, up to the last scrape at or before the look."""
    first = int((STAGE_START - ORIGIN).total_seconds()) // SCRAPE + 1
    last = int((LOOK - ORIGIN).total_seconds()) // SCRAPE
    return sum(int(counts[first:last + 1].sum()) for (_, v, code), counts in counted.items()
               if v == variant and (code == "500" or not errors_only))


# Series of `odd_total` whose instance label needs escaping in a PromQL string, and series with the
# same labels and one more (an exact-label selector matches those too). True: restarts mid-stage.
ODD = '"quoted" \\back\\slash\nnewline, é ✓'
ODD_SERIES: dict[tuple[tuple[str, str], ...], bool] = {
    (("instance", ODD),): True,
    (("instance", ODD), ("shard", "x")): True,
    (("instance", ODD), ("shard", "y")): False,
    (("instance", "plain"),): False,
    (("instance", "plain-2"),): False,
}


def odd_history() -> dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]]:
    """Per odd series: its increments per scrape interval and its scraped values (a restart at
    RESTART_AT for those that restart)."""
    out = {}
    for index, (labels, restarts) in enumerate(ODD_SERIES.items()):
        counts = 1 + (np.arange(SCRAPES) + index) % 3
        counts[0] = 0
        values = np.cumsum(counts)
        if restarts:
            values[RESTART_AT + 1:] -= values[RESTART_AT]
        out[labels] = (counts, values)
    return out


def escaped(value: str) -> str:
    """A label value as the OpenMetrics text writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics(scraped: dict[Key, list[tuple[int, int]]], path: Path) -> None:
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    for (pod, variant, code), samples in sorted(scraped.items()):
        labels = f'flag="long-stage",variant="{variant}",code="{code}",instance="pod-{pod}"'
        lines += [f"http_requests_total{{{labels}}} {value} {at}" for at, value in samples]
    lines += ["# HELP odd_total Requests.", "# TYPE odd_total counter"]
    at = int(ORIGIN.timestamp()) + SCRAPE * np.arange(SCRAPES)
    for labels, (_, values) in odd_history().items():
        text = ",".join(f'{name}="{escaped(value)}"' for name, value in labels)
        lines += [f"odd_total{{{text}}} {value} {moment}" for moment, value in zip(at, values, strict=True)]
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


class RecordingProvider(PrometheusMetricProvider):
    """The operator's Prometheus provider, keeping each instant query's answer: what was read back."""

    def __init__(self, address: str) -> None:
        super().__init__(PrometheusProvider(address=address))
        self.answers: list[tuple[str, Any]] = []

    async def query_at(self, query: str, at: datetime | None) -> Any:
        answer = await super().query_at(query, at)
        self.answers.append((query, answer))
        return answer


def returned(answer: Any) -> int:
    """How many numbers an answer holds: a row of an instant vector, or a raw sample, is one."""
    return sum(len(item.get("values", [])) or 1 for item in answer)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[Key, np.ndarray], PrometheusServer]]:
    directory = tmp_path_factory.mktemp("long-stage")
    counted, scraped = app_history()
    stage = (STAGE_START.timestamp() - 300, LOOK.timestamp())
    in_stage = sum(1 for samples in scraped.values() for at, _ in samples if stage[0] <= at <= stage[1])
    assert in_stage > 2 * compare.MAX_SAMPLES
    assert scraped[(GONE, "off", "200")][-1][0] < LOOK.timestamp() - 17 * 3600  # gone long before the look
    assert scraped[(BORN, "off", "200")][0][0] > STAGE_START.timestamp()  # created mid-stage
    openmetrics(scraped, directory / "app.om.txt")
    backfill(directory / "app.om.txt", directory / "tsdb")
    with start_prometheus(directory / "server", data_dir=directory / "tsdb", retention="3650d") as server:
        yield counted, server


def test_a_day_long_stage_is_counted_exactly_from_an_answer_bounded_by_its_series(
    history: tuple[dict[Key, np.ndarray], PrometheusServer],
) -> None:
    counted, server = history
    provider = RecordingProvider(server.url)
    found = operator_measures(server, compare_spec(), "long-stage", STAGE_START, LOOK, provider)
    assert found.kind == MeasurementKind.VALUE and found.counts is not None, found.detail
    assert found.counts == tuple(
        Arm(app_counted(counted, variant, True), app_counted(counted, variant, False)) for variant in ("on", "off")
    )
    # A summary per count (its rows: 3 numbers and the restarted pod's series), then that pod's raw
    # samples (a day and the lookback at 15 s) for each of its series the count matches.
    reset_series = {"errors": 1, "total": 2}
    day = (24 * 3600 + 300) // SCRAPE + 1
    for part, series in reset_series.items():
        asked = [answer for query, answer in provider.answers
                 if query.startswith('label_replace(') and (',code="500"}' in query) == (part == "errors")]
        assert [returned(answer) for answer in asked] == [3 + series] * 2, part
    raw = [answer for query, answer in provider.answers if not query.startswith("label_replace(")]
    assert len(raw) == 2 * sum(reset_series.values())  # one read per series with a reset, both arms
    assert all(len(answer) == 1 and returned(answer) <= day for answer in raw)
    assert sum(returned(answer) for _, answer in provider.answers) < 7 * day


def test_a_pod_gone_mid_stage_is_still_counted(
    history: tuple[dict[Key, np.ndarray], PrometheusServer],
) -> None:
    # Its counts end 18 h before the look: they are in the stage all the same.
    counted, server = history
    gone = {key: counts for key, counts in counted.items() if key[0] == GONE}
    assert app_counted(gone, "off", False) > 1000
    pod = 'http_requests_total{flag="{{flag}}",variant="off"%s,instance="pod-' + str(GONE) + '"}'
    spec = compare_spec()
    spec = spec.model_copy(update={"control": spec.control.model_copy(update={
        "errors": pod % ',code="500"', "total": pod % ""})})
    found = operator_measures(server, spec, "long-stage", STAGE_START, LOOK)
    assert found.kind == MeasurementKind.VALUE and found.counts is not None, found.detail
    assert found.counts[1] == Arm(app_counted(gone, "off", True), app_counted(gone, "off", False))


def test_series_that_restart_are_read_by_their_exact_labels_however_they_are_spelled(
    history: tuple[dict[Key, np.ndarray], PrometheusServer],
) -> None:
    # Two of five series restart: each is read by a selector of its own labels (a quote, backslashes,
    # a newline and non-ASCII in a value), which also matches a series with one more label; that
    # one is counted once all the same, from the summary or from its own read.
    _, server = history
    first = int((STAGE_START - ORIGIN).total_seconds()) // SCRAPE + 1
    last = int((LOOK - ORIGIN).total_seconds()) // SCRAPE
    expected = sum(int(counts[first:last + 1].sum()) for counts, _ in odd_history().values())
    provider = RecordingProvider(server.url)

    async def count() -> Measurement:
        try:
            return await compare.measure_count(provider, compare.CountQuery("odd_total", STAGE_START, LOOK))
        finally:
            await provider.aclose()

    found = asyncio.run(count())
    assert found.kind == MeasurementKind.VALUE and found.value == expected, found
    raw = [answer for query, answer in provider.answers if not query.startswith("label_replace(")]
    assert len(raw) == 2 and sorted(len(answer) for answer in raw) == [1, 3]


def scrape_time(index: int) -> datetime:
    return ORIGIN + timedelta(seconds=SCRAPE * index)


@pytest.mark.parametrize("selector", ['http_requests_total{instance=~"pod-(3|7|24)"}', "odd_total"])
def test_the_summary_counts_what_the_raw_samples_count_at_the_edges(
    history: tuple[dict[Key, np.ndarray], PrometheusServer], selector: str,
) -> None:
    # The previous path (every raw sample of the stage, counted in Python) as the reference, for
    # stages that start and looks that fall on a scrape, a millisecond either side of one, and
    # around the restart, the pod that goes away and the pod that appears; and at the lookback's edge.
    _, server = history
    ms = timedelta(milliseconds=1)
    stages = []
    for index in (RESTART_AT, GONE_AT, BORN_AT):
        for start in (scrape_time(index - 20), scrape_time(index - 20) - ms, scrape_time(index - 20) + ms,
                      scrape_time(index + 1)):
            for at in (scrape_time(index + 40), scrape_time(index + 40) - ms, scrape_time(index + 1), start):
                stages.append((start, at))
    # The pod gone before the stage: its last sample exactly LOOKBACK before the start (a baseline,
    # and nothing counted), or a millisecond further.
    gone = scrape_time(GONE_AT) + compare.LOOKBACK
    stages += [(start, start + timedelta(minutes=20)) for start in (gone, gone - ms, gone + ms)]
    provider = RecordingProvider(server.url)

    async def both(start: datetime, at: datetime) -> tuple[Measurement, Measurement]:
        count = compare.CountQuery(selector, start, at)
        raw = await provider.query_at(count.samples_query(), count.at_moment)
        return await compare.measure_count(provider, count), compare.matrix_count(raw, start)

    async def run() -> list[tuple[Measurement, Measurement]]:
        try:
            return [await both(start, at) for start, at in stages]
        finally:
            await provider.aclose()

    found = asyncio.run(run())
    for (start, at), (summary, raw) in zip(stages, found, strict=True):
        assert raw.kind == MeasurementKind.VALUE and summary == raw, (start, at)
    assert sum(1 for _, raw in found if raw.value) > len(stages) // 2  # most stages counted something
