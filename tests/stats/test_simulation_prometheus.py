"""The simulation behind docs/guardrails.md counts as the operator does through a REAL Prometheus: a
few simulated ramps' counters (created at their first increment, reset by restarts, scraped every
15 and 60 s) are backfilled with promtool, and at looks through every stage the operator's own
measuring path (metrics/compare.py, evaluated at the look's moment) gives the very counts the
simulation's emulation (stats/simulation.stage_counts) gives, so their decisions are the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

np = pytest.importorskip("numpy", reason="the simulations need numpy: pip install -e '.[simulate]'")

from featurerollout.core.measurement import MeasurementKind  # noqa: E402
from featurerollout.stats.sequential import Arm  # noqa: E402
from featurerollout.stats.simulation import Timeline, Traffic, stage_counts, timeline  # noqa: E402
from tests.stats.prometheus_counts import NEEDS_PROMETHEUS, compare_spec, operator_measures  # noqa: E402
from tests.support.history import backfill  # noqa: E402
from tests.support.prometheus import PrometheusServer, start_prometheus  # noqa: E402

pytestmark = NEEDS_PROMETHEUS

ORIGIN = datetime(2026, 10, 5, tzinfo=UTC)
ROLLOUTS = 4
EVERY_NTH_LOOK = 7  # every 7th look of each stage, and its last


def traffic(scrape_s: float, look_s: float) -> Traffic:
    # Frequent restarts, so that every ramp has resets and error series created again mid-stage.
    return Traffic(0.02, 0.02, rps=20, scrape_s=scrape_s, interval_s=look_s, restarts_per_hour=3,
                   stages=((10, 1800), (25, 1800), (50, 1800)))


def openmetrics(drawn: Timeline, path: Path) -> None:
    """The scraped values as an app exports them: a series has no sample while its process has not
    incremented it (after each restart too)."""
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    for (variant, code), values in sorted(drawn.values.items()):
        for rollout in range(values.shape[0]):
            labels = f'flag="r{rollout}",variant="{variant}",code="{code}"'
            lines += [f"http_requests_total{{{labels}}} {int(value)} {ORIGIN.timestamp() + i * drawn.scrape_s:.0f}"
                      for i, value in enumerate(values[rollout]) if value > 0]
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


@pytest.fixture(scope="module", params=[(15.0, 10.0), (30.0, 60.0), (60.0, 10.0), (60.0, 60.0)],
                ids=["scrape-15s-look-10s", "scrape-30s-look-1m", "scrape-60s-look-10s", "scrape-60s-look-1m"])
def simulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Traffic, Timeline, PrometheusServer]]:
    shape = traffic(*request.param)
    drawn = timeline(shape, ROLLOUTS, np.random.default_rng(41))
    directory = tmp_path_factory.mktemp("simulated")
    openmetrics(drawn, directory / "app.om.txt")
    backfill(directory / "app.om.txt", directory / "tsdb")
    with start_prometheus(directory / "server", data_dir=directory / "tsdb", retention="3650d") as server:
        yield shape, drawn, server


def operator_counts(server: PrometheusServer, flag: str, start: datetime, at: datetime) -> tuple[Arm, Arm] | None:
    """The operator's counts, or None for its NoData: an arm with no series yet (nothing counted)."""
    found = operator_measures(server, compare_spec(), flag, start, at)
    if found.kind == MeasurementKind.NO_DATA and "total: no series matched" in found.detail:
        return None
    assert found.kind == MeasurementKind.VALUE and found.counts is not None, found.detail
    return found.counts


def test_the_emulated_counts_are_the_operators_through_prometheus(
    simulated: tuple[Traffic, Timeline, PrometheusServer],
) -> None:
    shape, drawn, server = simulated
    resets = sum(int((np.diff(values, axis=1) < 0).sum()) for values in drawn.values.values())
    assert resets > 0  # the ramps do restart
    compared = 0
    for stage in range(len(shape.stages)):
        emulated = stage_counts(drawn, shape, stage)
        start = ORIGIN + timedelta(seconds=float(emulated.moments[0] - shape.interval_s))
        picks = sorted({*range(0, len(emulated.moments), EVERY_NTH_LOOK), len(emulated.moments) - 1})
        for look in picks:
            at = ORIGIN + timedelta(seconds=float(emulated.moments[look]))
            for rollout in range(ROLLOUTS):
                expected = (
                    Arm(emulated.treatment_errors[rollout, look], emulated.treatment_total[rollout, look]),
                    Arm(emulated.control_errors[rollout, look], emulated.control_total[rollout, look]),
                )
                got = operator_counts(server, f"r{rollout}", start, at)
                if got is None:  # NoData, as the emulation's empty arm is to the test (below minSample)
                    assert min(arm.total for arm in expected) == 0, (stage, look, rollout, expected)
                else:
                    assert got == expected, (stage, look, rollout)
                compared += 1
    print(f"{compared} looks: the operator's counts through Prometheus equal the emulation's")
