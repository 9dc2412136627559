"""`featurerollout simulate` against a REAL Prometheus whose TSDB was backfilled (promtool) with a week
of request counters that this test writes (tests/support/history.py): a week with one bad hour rolls
back in that hour at the right look; a clean week succeeds; the command prints how many queries it
will make and refuses too many; the picture has the size and the panels the rollout implies, and its
pixels show the rollback where it happened (and nowhere in a clean week), the axis ending shortly
after it, the legends off the data, and the control line beside the budget."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from featurerollout.api import Phase
from featurerollout.commands.simulate import HONESTY_NOTE, Replay, load_rollout, operator_measure, replay, timeline_text
from featurerollout.commands.simulate.picture import CONTROL_COLOR, ROLLBACK_COLOR, draw, figure_size
from tests.support.history import BAD_HOUR, ROLLOUT, STAGE_STARTS, WEEK_END, WEEK_START, find_promtool, week_prometheus
from tests.support.missing import skip_or_fail
from tests.support.prometheus import PrometheusServer, find_prometheus, query

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def prometheus_and_promtool() -> None:
    """Before the module's servers: skip without them, fail under CI."""
    if find_prometheus() is None or find_promtool() is None:
        skip_or_fail("needs prometheus and promtool (the Debian package prometheus: make prometheus)")
COARSE = timedelta(minutes=10)  # --step for the runs that need not be the operator's exact looks


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


def simulate(rollout_file: Path, prom: PrometheusServer, step: timedelta | None = None) -> Replay:
    spec, name, namespace = load_rollout(rollout_file)
    measure = operator_measure(spec, address=prom.url, name=name, namespace=namespace)
    return asyncio.run(replay(spec, measure, start=WEEK_START, end=WEEK_END, step=step))


@pytest.fixture(scope="module")
def bad_replay(rollout_file: Path, bad_week: PrometheusServer) -> Replay:
    """The bad week replayed at every analysis interval, as the operator looks (~26,000 queries)."""
    return simulate(rollout_file, bad_week)


@pytest.fixture(scope="module")
def clean_replay(rollout_file: Path, clean_week: PrometheusServer) -> Replay:
    return simulate(rollout_file, clean_week, COARSE)


def run_cli(rollout_file: Path, prom: PrometheusServer, png: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurerollout", "simulate", "-f", str(rollout_file), "--prometheus", prom.url,
         "--from", WEEK_START.isoformat(), "--to", WEEK_END.isoformat(), "--png", str(png), *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )


def stamp(moment: object) -> str:
    return str(moment.isoformat()).replace("+00:00", "Z")  # type: ignore[attr-defined]


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


def test_the_bad_hour_rolls_back_at_the_right_look(rollout_file: Path, bad_replay: Replay) -> None:
    spec, _, _ = load_rollout(rollout_file)
    assert spec.analysis is not None
    metric = spec.analysis.metrics[0]
    interval = spec.analysis.every
    # Looks fall on WEEK_START + k * interval; the first that sees the bad hour is the first after it
    # began (its 5m rate window then holds one bad minute: far above the budget), and the rollback
    # comes with the (failureLimit + 1)th failure in a row.
    first_bad = BAD_HOUR + interval
    expected = first_bad + interval * metric.failure_limit
    assert BAD_HOUR < expected < BAD_HOUR + timedelta(hours=1)
    assert bad_replay.phase == Phase.ROLLED_BACK and bad_replay.rolled_back_at == expected
    out = timeline_text(bad_replay)
    failed = [line for line in out if "  Failed " in line]
    assert [line[:20] for line in failed] == [stamp(first_bad + interval * i) for i in range(metric.failure_limit + 1)]
    assert all("vs budget <= 0.02" in line for line in failed)
    entered = [line for line in out if "StageAdvanced" in line or "Started" in line]
    assert [line[:20] for line in entered] == [stamp(t) for t in STAGE_STARTS[:3]]
    # One look per analysis interval from the start, as the operator's.
    assert [e.at for e in bad_replay.evaluations[:3]] == [WEEK_START + interval * i for i in range(3)]


def test_the_command_prints_its_query_count_progress_and_timeline(rollout_file: Path, bad_week: PrometheusServer,
                                                                  tmp_path: Path) -> None:
    """With --step 10m (a coarse look, ~5,000 queries): the bad hour is first seen at 14:10, and the
    third failure in a row, at 14:30, rolls back."""
    done = run_cli(rollout_file, bad_week, tmp_path / "bad.png", "--step", "10m")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out.count(HONESTY_NOTE) == 1
    assert "looking every 600s (--step: coarser than the operator)" in out[0]
    assert out[-2].startswith(f"would have ROLLED BACK at {stamp(BAD_HOUR + 3 * COARSE)}: rolled back: ")
    assert "error-rate" in out[-2] and "> 0.02 at 50%" in out[-2]
    assert [line[:20] for line in out if "  Failed " in line] == [stamp(BAD_HOUR + COARSE * i) for i in (1, 2, 3)]
    first = done.stderr.splitlines()[0]
    assert "about 1,013 looks (one every 600s) x 5 instant queries = about 5,065 queries" in first, first
    assert "replayed up to" in done.stderr  # progress on a long range
    assert out[-1] == f"picture: {tmp_path / 'bad.png'}"


def test_too_many_queries_are_refused_before_any_is_made(rollout_file: Path, bad_week: PrometheusServer,
                                                        tmp_path: Path) -> None:
    done = run_cli(rollout_file, bad_week, tmp_path / "no.png", "--max-queries", "1000")
    assert done.returncode == 2
    assert "about 50,425 queries" in done.stderr and "more than --max-queries (1,000)" in done.stderr
    assert "--step" in done.stderr and not (tmp_path / "no.png").exists()


def test_a_clean_week_succeeds(clean_replay: Replay) -> None:
    assert clean_replay.phase == Phase.SUCCEEDED
    # 24h + 24h + 48h + 24h of stages: it completes when the 100% stage has held its day.
    assert clean_replay.finished_at == STAGE_STARTS[3] + timedelta(hours=24)
    assert [s.start for s in clean_replay.stages] == list(STAGE_STARTS)
    assert not [m for m in clean_replay.timeline if m.kind in ("Failed", "RolledBack")]


def test_compare_counts_are_the_stage_so_far_at_the_look(clean_replay: Replay, clean_week: PrometheusServer) -> None:
    """A compare metric's counts at a look twelve hours into the 50% stage are Prometheus's own
    increase() over the stage so far, at that instant."""
    at = STAGE_STARTS[2] + timedelta(hours=12)
    evaluation = next(e for e in clean_replay.evaluations if e.at == at)
    status = next(m for m in evaluation.metrics if m.name == "vs-control")
    assert status.treatment is not None and status.control is not None
    for variant, arm in (("on", status.treatment), ("off", status.control)):
        promql = f'sum(increase(http_requests_total{{variant="{variant}"}}[12h] @ {at.timestamp():.0f}))'
        expected = query(clean_week.url, promql).value
        assert expected is not None and expected > 0
        assert arm.total == pytest.approx(expected, rel=1e-9)
    # The flag was live at 10% while this was recorded, whatever the simulated 50%.
    assert status.treatment.total / (status.treatment.total + status.control.total) == pytest.approx(0.10, abs=0.01)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def colour_mask(rgb: np.ndarray, colour: str) -> np.ndarray:
    want = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.asarray(np.abs(rgb - want).max(axis=2) < 0.04)


def test_the_picture_shows_the_rollback_in_its_pixels(rollout_file: Path, bad_replay: Replay, clean_replay: Replay,
                                                      tmp_path: Path) -> None:
    spec, _, _ = load_rollout(rollout_file)
    assert spec.analysis is not None
    panels = len(spec.analysis.metrics)

    layout = draw(bad_replay, tmp_path / "bad.png")
    rgb = read_rgb(tmp_path / "bad.png")
    height, width = rgb.shape[:2]
    assert (width, height) == figure_size(panels) == layout.size == (1200, 80 + 280 * panels)
    assert panel_count(rgb) == panels == len(layout.panels)

    # The rollback is a red vertical line through every panel at the rollback's time, and the only red.
    assert layout.rollback_x is not None and layout.span is not None
    start, end = layout.span
    left, _, right, _ = layout.panels[0]
    share = (bad_replay.rolled_back_at - start) / (end - start)  # type: ignore[operator]
    assert abs(layout.rollback_x - (left + share * (right - left))) < 2
    red = red_mask(rgb)
    for _, top, _, bottom in layout.panels:
        column = red[top + 2:bottom - 2, layout.rollback_x - 2:layout.rollback_x + 3].any(axis=1)
        assert column.mean() > 0.9, "the rollback line does not cross the panel"
    for box in layout.legends:
        # The legends sit off the data: outside every panel's box.
        assert not any(overlaps(box, panel) for panel in layout.panels), (box, layout.panels)
        left_, top_, right_, bottom_ = box  # the legend's sample of the line is red too
        red[top_:bottom_ + 1, left_:right_ + 1] = False
    columns = np.flatnonzero(red.any(axis=0))
    assert columns.min() >= layout.rollback_x - 3 and columns.max() <= layout.rollback_x + 3
    # No empty stretch after the rollback: the axis ends shortly after it (nothing later was simulated).
    assert (right - layout.rollback_x) / (right - left) < 0.1
    # The compare panel shows its control line (beside the budget), not hidden under the treatment.
    _, top, _, bottom = layout.panels[1]
    assert colour_mask(rgb[top:bottom, left:right], CONTROL_COLOR).sum() > 500

    layout = draw(clean_replay, tmp_path / "clean.png")
    rgb = read_rgb(tmp_path / "clean.png")
    assert layout.rollback_x is None
    assert panel_count(rgb) == panels
    assert not red_mask(rgb).any(), "a clean week's picture has no rollback line"
