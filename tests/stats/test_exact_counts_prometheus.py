"""A compare metric's counts through a REAL Prometheus equal what the app counted: the operator's own
measuring path (metrics/compare.py) on counters backfilled (promtool) as an app exports them. Each
counter is created at its first increment (as client libraries do), the treatment's first error
comes mid-stage, and the process restarts mid-stage (a counter reset, its series created again
lazily). Scrapes every 15 s. The older `sum(increase(...[{{window}}]))` form gets the same exact
counts; an expression run as written (extrapolated by `increase()`) does not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from featurerollout.api import Compare
from featurerollout.core.measurement import MeasurementKind
from featurerollout.edges.metrics import compare
from featurerollout.stats.sequential import Arm
from tests.stats.prometheus_counts import NEEDS_PROMETHEUS, compare_spec, operator_measures
from tests.support.history import backfill
from tests.support.prometheus import PrometheusServer, start_prometheus

pytestmark = NEEDS_PROMETHEUS

ORIGIN = datetime(2026, 11, 2, tzinfo=UTC)
SCRAPE = 15
SPAN = 40 * 60  # seconds of history
STAGE_START = ORIGIN + timedelta(minutes=10, seconds=7)
RESTART = 25 * 60  # the process restarts right after this scrape: its counters start again from 0
FIRST_ON_ERROR = 14 * 60  # the treatment's error counter does not exist before this moment
LOOKS = [STAGE_START + timedelta(seconds=s) for s in (50, 65, 300, 14 * 60 + 53, 25 * 60, 29 * 60 + 59)]

Key = tuple[str, str]  # (variant, code)
Requests = list[tuple[float, Key, int]]  # (moment, series, how many)


def app_history(seed: int = 7) -> tuple[list[tuple[float, Key, int]], dict[Key, list[tuple[int, int]]]]:
    """The app's requests, second by second ((moment, series, how many)), and what a scrape every
    SCRAPE s saw of each series: (unix seconds, value) from the series' first increment on."""
    rng = np.random.default_rng(seed)
    requests: list[tuple[float, Key, int]] = []
    for second in range(SPAN):
        for variant, rps, error_rate in (("on", 3, 0.2), ("off", 20, 0.02)):
            count = int(rng.poisson(rps))
            errors = int(rng.binomial(count, error_rate))
            if variant == "on" and second < FIRST_ON_ERROR:
                errors = 0
            moment = ORIGIN.timestamp() + second + 0.5
            requests += [(moment, (variant, "200"), count - errors), (moment, (variant, "500"), errors)]
    scraped: dict[Key, list[tuple[int, int]]] = defaultdict(list)
    values: dict[Key, int] = {}
    pending = iter(sorted(requests))
    request = next(pending, None)
    for scrape in range(0, SPAN + 1, SCRAPE):
        at = int(ORIGIN.timestamp()) + scrape
        while request is not None and request[0] <= at:
            if request[2] > 0:  # created at its first increment
                values[request[1]] = values.get(request[1], 0) + request[2]
            request = next(pending, None)
        for key, value in values.items():
            scraped[key].append((at, value))
        if scrape == RESTART:
            values = {}
    return requests, scraped


def counted(requests: list[tuple[float, Key, int]], variant: str, errors_only: bool, look: datetime) -> int:
    """What the app counted for one arm in the stage as of `look`: the requests after the last scrape
    at or before the stage's start, up to the last scrape at or before the look."""
    def last_scrape(moment: datetime) -> float:
        offset = moment.timestamp() - ORIGIN.timestamp()
        return ORIGIN.timestamp() + offset // SCRAPE * SCRAPE

    begin, end = last_scrape(STAGE_START), last_scrape(look)
    return sum(n for moment, (v, code), n in requests
               if v == variant and (code == "500" or not errors_only) and begin < moment <= end)


def openmetrics(scraped: dict[Key, list[tuple[int, int]]], path: Path) -> None:
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    for (variant, code), samples in sorted(scraped.items()):
        labels = f'flag="new-checkout",variant="{variant}",code="{code}",instance="app-0"'
        lines += [f"http_requests_total{{{labels}}} {value} {at}" for at, value in samples]
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Requests, PrometheusServer]]:
    directory = tmp_path_factory.mktemp("exact-counts")
    requests, scraped = app_history()
    assert scraped[("on", "500")][0][0] > STAGE_START.timestamp()  # the error series appears mid-stage
    openmetrics(scraped, directory / "app.om.txt")
    backfill(directory / "app.om.txt", directory / "tsdb")
    with start_prometheus(directory / "server", data_dir=directory / "tsdb", retention="3650d") as server:
        yield requests, server


def measure(server: PrometheusServer, spec: Compare, look: datetime) -> tuple[Arm, Arm]:
    found = operator_measures(server, spec, "new-checkout", STAGE_START, look)
    assert found.kind == MeasurementKind.VALUE and found.counts is not None, found.detail
    return found.counts


@pytest.mark.parametrize("form", ["selector", "windowed"])
def test_the_counts_equal_what_the_app_counted(
    history: tuple[Requests, PrometheusServer], form: str
) -> None:
    requests, server = history
    for look in LOOKS:
        expected = tuple(Arm(counted(requests, variant, True, look), counted(requests, variant, False, look))
                         for variant in ("on", "off"))
        assert measure(server, compare_spec(form), look) == expected, look


def test_an_expression_run_as_written_is_extrapolated(
    history: tuple[Requests, PrometheusServer],
) -> None:
    # What the exact path saves the test from: a minute into the stage, increase() stretches four
    # scrapes' worth to the window's edges (and beyond the stage's start, to the look).
    requests, server = history
    look = LOOKS[0]
    _, control = measure(server, compare_spec("as written"), look)
    assert control.total > 1.1 * counted(requests, "off", False, look)


def test_a_count_beyond_the_sample_cap_is_an_error_naming_the_cap(
    history: tuple[Requests, PrometheusServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, server = history
    monkeypatch.setattr(compare, "MAX_SAMPLES", 100)  # the stage holds ~4 series x 130 scrapes
    found = operator_measures(server, compare_spec(), "new-checkout", STAGE_START, LOOKS[-1])
    assert found.kind == MeasurementKind.ERROR, found
    assert found.detail.startswith(("compare.treatment.errors: ", "compare.treatment.total: "))
    assert "more than the 100 the operator reads for one count (compare.MAX_SAMPLES)" in found.detail


def test_a_selector_without_a_stage_is_an_error_and_the_older_form_runs_as_written(
    history: tuple[Requests, PrometheusServer],
) -> None:
    _, server = history
    refused = operator_measures(server, compare_spec(), "new-checkout", None, None)
    assert refused.kind == MeasurementKind.ERROR and "no stage has begun" in refused.detail
    # The backfilled history is long past: its 1m window now holds nothing.
    windowed = operator_measures(server, compare_spec("windowed"), "new-checkout", None, None)
    assert windowed.kind == MeasurementKind.NO_DATA
