"""The picture of a simulation (`featurerollout simulate --png`), drawn with matplotlib (the optional
`simulate` extra). It shows what the decisions used: the numbers of each look, not a recorded series.

One panel per metric, stacked, sharing the time axis:
 * a metric with `query`: its value at each look (blue), as the operator measured it then, its budget
   (orange, dashed: max and/or min), and the looks that failed (purple crosses). The panel's title
   names the look interval and the range window(s) of the query (`[5m]`): the interval each value
   covers;
 * a metric with `compare`: at each look, the treatment's error rate over the stage so far (blue), the
   control's (grey), and the budget the treatment is held to (orange, dashed: control + maxIncrease,
   or control x maxRatio), failed looks as purple crosses;
 * on every panel: the stages as shaded bands labelled with their weight, the weight itself on a
   twin axis (green steps), and the rollback moment as a red vertical line.

Rates are shown in % (a compare metric's always; a query metric's when its budget lies within 0..1).
The legends sit above the panels, never over the data. The time axis ends shortly after the replay
did (a rollback or a success ends it; nothing after it was simulated), not at --to.

The size is fixed by the number of panels (`figure_size`), so that it can be checked: 1200 pixels
wide, 80 + 280 per panel high. Red (#d62728) is used for the rollback only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib

from featurerollout.core.measurement import analysis_interval

matplotlib.use("Agg")  # no display: a file only

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from featurerollout.api import Metric, MetricResult, MetricStatus
from featurerollout.commands.simulate.replay import Replay

DPI = 100
WIDTH_IN = 12.0
PANEL_IN = 2.8
MARGIN_IN = 0.8
ROLLBACK_COLOR = "#d62728"
VALUE_COLOR = "#1f77b4"
CONTROL_COLOR = "#a0a0a0"
BUDGET_COLOR = "#ff7f0e"
WEIGHT_COLOR = "#2ca02c"
FAILED_COLOR = "#9467bd"
BAND_COLORS = ("#e8eef7", "#f4f4f4")
# After the replay ended (rollback, success), the axis goes on for this share of what came before
# (at least a few looks), so the end is seen with a little context and no empty stretch after it.
TAIL_SHARE = 0.05
_RANGE_RE = re.compile(r"\[([^\]:]+)(?::[^\]]*)?\]")


def figure_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a picture with that many panels."""
    return round(WIDTH_IN * DPI), round((MARGIN_IN + PANEL_IN * panels) * DPI)


@dataclass(frozen=True)
class Layout:
    """Where things landed, in image pixels (origin at the top left): each panel's box
    (left, top, right, bottom), each panel's legend box, the x of the rollback line (None: no
    rollback), and the time span of the x axis."""

    size: tuple[int, int]
    panels: tuple[tuple[int, int, int, int], ...]
    rollback_x: int | None
    legends: tuple[tuple[int, int, int, int], ...] = ()
    span: tuple[datetime, datetime] | None = None


def view_end(result: Replay) -> datetime:
    """Where the time axis ends: shortly after the replay ended, else at the end of the range."""
    if result.finished_at is None:
        return result.end
    interval = analysis_interval(result.spec)
    every = interval.every if interval is not None else timedelta(minutes=1)
    tail = max((result.finished_at - result.start) * TAIL_SHARE, every * 3)
    return min(result.end, result.finished_at + tail)


def _x(times: list[datetime]) -> np.ndarray:
    """Times as numpy datetime64 in UTC, which matplotlib plots (and its stubs accept)."""
    return np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[ms]")


def _rate(errors: float, total: float) -> float:
    return errors / total if total > 0 else float("nan")


def in_percent(metric: Metric) -> bool:
    """Is the metric a rate (shown in %)? A compare metric always; a query metric whose budget lies
    within 0..1."""
    if metric.compare is not None:
        return True
    bounds = [b for b in (metric.max, metric.min) if b is not None]
    return bool(bounds) and all(0 <= b <= 1 for b in bounds)


def _statuses(result: Replay, name: str) -> list[tuple[datetime, MetricStatus]]:
    return [(e.at, m) for e in result.evaluations for m in e.metrics if m.name == name]


def _windows(query: str) -> str:
    found = list(dict.fromkeys(_RANGE_RE.findall(query)))
    return ", ".join(f"[{w}]" for w in found)


def _title(metric: Metric, every: timedelta) -> str:
    look = f"looked at every {every.total_seconds():g}s"
    if metric.compare is not None:
        budget = (f"control x {metric.compare.max_ratio:g}" if metric.compare.max_ratio is not None
                  else f"control + {(metric.compare.max_increase or 0.0) * 100:g} percentage point(s)")
        return (f"{metric.name}: error rate over the stage so far ({{{{window}}}}: stage start .. look), {look}; "
                f"budget {budget}")
    windows = _windows(metric.query or "")
    covers = f", each value over the query's window {windows}" if windows else ""
    budget = metric.budget()
    if in_percent(metric):
        budget = " and ".join(f"{sign} {bound * 100:g}%" for sign, bound in ((">=", metric.min), ("<=", metric.max))
                              if bound is not None)
    return f"{metric.name}: the value at each look, {look}{covers}; budget {budget}"


def _draw_query(ax: Axes, metric: Metric, result: Replay, scale: float) -> None:
    points = [(t, m.value) for t, m in _statuses(result, metric.name) if m.value is not None]
    ax.plot(_x([t for t, _ in points]), [v * scale for _, v in points], color=VALUE_COLOR, linewidth=0.7,
            label="value at each look")
    for bound in (metric.max, metric.min):
        if bound is not None:
            ax.axhline(bound * scale, color=BUDGET_COLOR, linewidth=1.5, linestyle="--", label="budget")


def _draw_compare(ax: Axes, metric: Metric, result: Replay, scale: float) -> None:
    assert metric.compare is not None
    times: list[datetime] = []
    treatment: list[float] = []
    control: list[float] = []
    budget: list[float] = []
    for at, status in _statuses(result, metric.name):
        if status.treatment is None or status.control is None:
            continue
        c = _rate(status.control.errors, status.control.total)
        times.append(at)
        treatment.append(_rate(status.treatment.errors, status.treatment.total) * scale)
        control.append(c * scale)
        budget.append((c * metric.compare.max_ratio if metric.compare.max_ratio is not None
                       else c + (metric.compare.max_increase or 0.0)) * scale)
    # The control is drawn wide beneath the treatment, so that it shows beside it when the two agree.
    ax.plot(_x(times), budget, color=BUDGET_COLOR, linewidth=1.5, linestyle="--", label="budget", zorder=3)
    ax.plot(_x(times), control, color=CONTROL_COLOR, linewidth=3.5, label="control", zorder=3)
    ax.plot(_x(times), treatment, color=VALUE_COLOR, linewidth=1.0, label="treatment", zorder=4)


def _failed(result: Replay, metric: Metric, scale: float) -> tuple[list[datetime], list[float]]:
    """Where the failed looks are drawn: the value (query) or the treatment's rate (compare)."""
    times: list[datetime] = []
    values: list[float] = []
    for at, status in _statuses(result, metric.name):
        if status.result != MetricResult.FAILED:
            continue
        if metric.compare is not None and status.treatment is not None:
            value: float | None = _rate(status.treatment.errors, status.treatment.total)
        else:
            value = status.value
        if value is not None:
            times.append(at)
            values.append(value * scale)
    return times, values


def draw(result: Replay, path: Path) -> Layout:
    """Draw the simulation into a PNG at `path`; returns where its parts landed."""
    spec = result.spec
    metrics = list(spec.analysis.metrics) if spec.analysis is not None else []
    interval = analysis_interval(spec)
    every = interval.every if interval is not None else timedelta(minutes=1)
    panels = max(1, len(metrics))
    width, height = figure_size(panels)
    fig, axes_array = plt.subplots(panels, 1, sharex=True, squeeze=False,
                                   figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = [row[0] for row in axes_array]
    # Fixed margins (no tight layout), so that the size and the panels' places follow from the count;
    # room above each panel for its title and legend.
    fig.subplots_adjust(left=0.07, right=0.93, top=1 - 0.75 / (height / DPI), bottom=0.35 / (height / DPI),
                        hspace=0.42)
    outcome = {"RolledBack": "rolled back", "Succeeded": "succeeded"}.get(str(result.phase), str(result.phase))
    end = view_end(result)
    cut = " (the axis ends shortly after: nothing later was simulated)" if end < result.end else ""
    fig.suptitle(f"featurerollout simulate: flag {spec.flag}, {outcome}{cut}; "
                 f"recorded values under the exposure live then", fontsize=10)
    steps = result.weight_steps()
    rollback = result.rolled_back_at
    for index, ax in enumerate(axes):
        for span in result.stages:
            ax.axvspan(span.start, span.end or end, color=BAND_COLORS[span.stage % 2], zorder=0)
            ax.text(span.start, 0.02, f" stage {span.stage + 1}: {span.weight:g}%", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="bottom", ha="left", color="#555555")
        if index < len(metrics):
            metric = metrics[index]
            scale = 100.0 if in_percent(metric) else 1.0
            if metric.compare is None:
                _draw_query(ax, metric, result, scale)
            else:
                _draw_compare(ax, metric, result, scale)
            times, values = _failed(result, metric, scale)
            if times:
                ax.plot(_x(times), values, "x", color=FAILED_COLOR, markersize=5, label="failed look", zorder=5)
            if scale == 100.0:
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=100))
            ax.set_ylabel(metric.name + (" (%)" if scale == 100.0 else ""), fontsize=8)
            ax.set_title(_title(metric, every), fontsize=8, loc="left", pad=16)
        twin = ax.twinx()
        if steps:
            times_w = [t for t, _ in steps] + [end]
            weights = [w for _, w in steps] + [steps[-1][1]]
            twin.step(times_w, weights, where="post", color=WEIGHT_COLOR, linewidth=1.2, label="weight (simulated)")
        twin.set_ylim(0, 105)
        twin.set_ylabel("weight %", fontsize=8, color=WEIGHT_COLOR)
        twin.tick_params(labelsize=7)
        if rollback is not None:
            ax.axvline(rollback, color=ROLLBACK_COLOR, linewidth=2.5, zorder=6, label="rollback")
        ax.set_xlim(result.start, end)
        ax.tick_params(labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        # Above the panel, at its right, outside the data: never over a line.
        ax.legend(handles + more, labels + more_labels, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                  ncol=len(handles) + len(more), fontsize=7, frameon=False, borderaxespad=0.1)
    # matplotlib's stubs leave DateFormatter's __init__ unannotated.
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.canvas.draw()
    boxes = []
    legends = []
    for ax in axes:
        box = ax.get_window_extent()
        boxes.append((round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)))
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent()
            legends.append((round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)))
    rollback_x = None
    if rollback is not None:
        # The x axis spans exactly [start, end] (set_xlim above), so the place is a proportion.
        box = axes[0].get_window_extent()
        share = (rollback - result.start) / (end - result.start)
        rollback_x = round(box.x0 + share * (box.x1 - box.x0))
    plt.close(fig)
    return Layout((width, height), tuple(boxes), rollback_x, tuple(legends), (result.start, end))
