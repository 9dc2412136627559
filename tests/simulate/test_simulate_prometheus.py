"""`featurerollout simulate` against a REAL Prometheus whose TSDB was backfilled (promtool) with a week
of request counters that this test writes (tests/support/history.py): a week with one bad hour rolls
back in that hour at the right evaluation; a clean week succeeds; the picture has the size and the
panels the rollout implies, and its pixels show the rollback where it happened (and nowhere in a
clean week)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from tests.support.history import BAD_HOUR, ROLLOUT, STAGE_STARTS, WEEK_END, WEEK_START, find_promtool, week_prometheus
from tests.support.missing import skip_or_fail
from tests.support.prometheus import PrometheusServer, find_prometheus, query

from featurerollout.api import Phase
from featurerollout.simulate import HONESTY_NOTE, Grid, History, Replay, fetch_history, load_rollout, replay
from featurerollout.simulate_picture import ROLLBACK_COLOR, draw, figure_size

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def prometheus_and_promtool() -> None:
    """Before the module's servers: skip without them, fail under CI."""
    if find_prometheus() is None or find_promtool() is None:
        skip_or_fail("needs prometheus and promtool (the Debian package prometheus: make prometheus)")


@pytest.fixture(scope="module")
def rollout_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rollout") / "rollout.yaml"
    path.write_text(ROLLOUT)
    return path


@pytest.fixture(scope="module")
def bad_week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with week_prometheus(tmp_path_factory.mktemp("bad-week"), bad_hour=BAD_HOUR) as server:
        yield server


@pytest.fixture(scope="module")
def clean_week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with week_prometheus(tmp_path_factory.mktemp("clean-week"), bad_hour=None) as server:
        yield server


def simulate(rollout_file: Path, prom: PrometheusServer) -> tuple[Replay, History]:
    spec, name, namespace = load_rollout(rollout_file)
    assert spec.analysis is not None
    grid = Grid(WEEK_START, spec.analysis.every, int((WEEK_END - WEEK_START) / spec.analysis.every) + 1)
    history = fetch_history(spec, prom.url, grid, name=name, namespace=namespace)
    return replay(spec, history, start=WEEK_START, end=WEEK_END), history


def run_cli(rollout_file: Path, prom: PrometheusServer, png: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurerollout", "simulate", "-f", str(rollout_file), "--prometheus", prom.url,
         "--from", WEEK_START.isoformat(), "--to", WEEK_END.isoformat(), "--png", str(png)],
        capture_output=True, text=True, timeout=300, check=False,
    )


# --- pixels ------------------------------------------------------------------------------------


def read_rgb(path: Path) -> np.ndarray:
    pixels = image.imread(str(path))
    return np.asarray(pixels[:, :, :3], dtype=float)


def red_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the rollback's colour (#d62728), with a margin for antialiasing."""
    want = np.array([int(ROLLBACK_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.asarray(np.abs(rgb - want).max(axis=2) < 0.08)


def panel_count(rgb: np.ndarray) -> int:
    """Panels counted from the pixels: each has a black frame whose top and bottom edges are rows that
    are dark across most of the width (nothing else in the picture is that wide and that dark)."""
    dark = rgb.max(axis=2) < 0.35
    wide = dark.sum(axis=1) > 0.8 * rgb.shape[1]
    edges = int(np.sum(wide[1:] & ~wide[:-1]) + (1 if wide[0] else 0))  # runs of such rows
    return edges // 2


# --- the tests ---------------------------------------------------------------------------------


def test_the_bad_hour_rolls_back_at_the_right_evaluation(rollout_file: Path, bad_week: PrometheusServer,
                                                         tmp_path: Path) -> None:
    spec, _, _ = load_rollout(rollout_file)
    assert spec.analysis is not None
    metric = spec.analysis.metrics[0]
    interval = spec.analysis.every
    # Evaluations fall on WEEK_START + k * interval; the first that sees the bad hour is the first after
    # it began (its 5m rate window then holds one bad minute: far above the budget), and the rollback
    # comes with the (failureLimit + 1)th failure in a row.
    first_bad = BAD_HOUR + interval
    expected = first_bad + interval * metric.failure_limit
    assert BAD_HOUR < expected < BAD_HOUR + timedelta(hours=1)

    done = run_cli(rollout_file, bad_week, tmp_path / "bad.png")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out.count(HONESTY_NOTE) == 1
    stamp = expected.isoformat().replace("+00:00", "Z")
    assert out[-2] == f"would have ROLLED BACK at {stamp}: rolled back: " + out[-2].split(": rolled back: ", 1)[1]
    assert "error-rate" in out[-2] and "> 0.02 at 50%" in out[-2]
    failed = [line for line in out if "  Failed " in line]
    assert [line[:20] for line in failed] == [
        (first_bad + interval * i).isoformat().replace("+00:00", "Z") for i in range(metric.failure_limit + 1)]
    assert all("vs budget <= 0.02" in line for line in failed)
    entered = [line for line in out if "StageAdvanced" in line or "Started" in line]
    assert [line[:20] for line in entered] == [t.isoformat().replace("+00:00", "Z") for t in STAGE_STARTS[:3]]
    assert "replayed up to" in done.stderr and "fetched error-rate" in done.stderr  # progress on a long range
    assert out[-1] == f"picture: {tmp_path / 'bad.png'}"


def test_a_clean_week_succeeds(rollout_file: Path, clean_week: PrometheusServer) -> None:
    result, _ = simulate(rollout_file, clean_week)
    assert result.phase == Phase.SUCCEEDED
    # 24h + 24h + 48h + 24h of stages: it completes when the 100% stage has held its day.
    assert result.finished_at == STAGE_STARTS[3] + timedelta(hours=24)
    assert [s.start for s in result.stages] == list(STAGE_STARTS)
    assert not [m for m in result.timeline if m.kind in ("Failed", "RolledBack")]


def test_compare_counts_over_the_stage_are_what_prometheus_counts(rollout_file: Path,
                                                                   clean_week: PrometheusServer) -> None:
    """The per-step counts summed over the stage so far agree with Prometheus's own increase() over the
    same window, at an evaluation twelve hours into the 50% stage."""
    result, _ = simulate(rollout_file, clean_week)
    at = STAGE_STARTS[2] + timedelta(hours=12)
    evaluation = next(e for e in result.evaluations if e.at == at)
    status = next(m for m in evaluation.metrics if m.name == "vs-control")
    assert status.treatment is not None and status.control is not None
    for variant, arm in (("on", status.treatment), ("off", status.control)):
        promql = f'sum(increase(http_requests_total{{variant="{variant}"}}[12h] @ {at.timestamp():.0f}))'
        expected = query(clean_week.url, promql).value
        assert expected is not None and expected > 0
        assert arm.total == pytest.approx(expected, rel=0.01)
    # The flag was live at 10% while this was recorded, whatever the simulated 50%.
    assert status.treatment.total / (status.treatment.total + status.control.total) == pytest.approx(0.10, abs=0.01)


def test_the_picture_shows_the_rollback_in_its_pixels(rollout_file: Path, bad_week: PrometheusServer,
                                                       clean_week: PrometheusServer, tmp_path: Path) -> None:
    spec, _, _ = load_rollout(rollout_file)
    assert spec.analysis is not None
    panels = len(spec.analysis.metrics)

    bad, history = simulate(rollout_file, bad_week)
    layout = draw(bad, history, tmp_path / "bad.png")
    rgb = read_rgb(tmp_path / "bad.png")
    height, width = rgb.shape[:2]
    assert (width, height) == figure_size(panels) == layout.size == (1200, 80 + 240 * panels)
    assert panel_count(rgb) == panels == len(layout.panels)

    # The rollback is a red vertical line through every panel at the rollback's time, and the only red.
    assert layout.rollback_x is not None
    share = (BAD_HOUR - WEEK_START) / (WEEK_END - WEEK_START)
    left, _, right, _ = layout.panels[0]
    assert abs(layout.rollback_x - (left + share * (right - left))) < 3  # in the bad hour (1h is ~1.3 px)
    red = red_mask(rgb)
    for _, top, _, bottom in layout.panels:
        column = red[top + 2:bottom - 2, layout.rollback_x - 2:layout.rollback_x + 3].any(axis=1)
        assert column.mean() > 0.9, "the rollback line does not cross the panel"
    for left, top, right, bottom in layout.legends:  # the legend's sample of the line is red too
        red[top:bottom + 1, left:right + 1] = False
    columns = np.flatnonzero(red.any(axis=0))
    assert columns.min() >= layout.rollback_x - 3 and columns.max() <= layout.rollback_x + 3

    clean, history = simulate(rollout_file, clean_week)
    layout = draw(clean, history, tmp_path / "clean.png")
    rgb = read_rgb(tmp_path / "clean.png")
    assert layout.rollback_x is None
    assert panel_count(rgb) == panels
    assert not red_mask(rgb).any(), "a clean week's picture has no rollback line"
