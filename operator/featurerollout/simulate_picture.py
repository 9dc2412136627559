"""The picture of a simulation (`featurerollout simulate --png`), drawn with matplotlib (the optional
`simulate` extra).

One panel per metric, stacked, sharing the time axis:
 * a metric with `query`: what Prometheus recorded (blue), its budget (orange: max and/or min), and
   the evaluations that failed (purple crosses);
 * a metric with `compare`: the treatment's error rate over the stage so far (blue) and the
   control's (grey) at each evaluation, and the budget the treatment is held to (orange:
   control + maxIncrease, or control x maxRatio), failed evaluations as purple crosses;
 * on every panel: the stages as shaded bands labelled with their weight, the weight itself on a
   twin axis (green steps), and the rollback moment as a red vertical line.

The size is fixed by the number of panels (`figure_size`), so that it can be checked: 1200 pixels
wide, 80 + 240 per panel high. Red (#d62728) is used for the rollback only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file only

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from featurerollout.api import Metric, MetricResult
from featurerollout.simulate import History, Replay

DPI = 100
WIDTH_IN = 12.0
PANEL_IN = 2.4
MARGIN_IN = 0.8
ROLLBACK_COLOR = "#d62728"
VALUE_COLOR = "#1f77b4"
CONTROL_COLOR = "#7f7f7f"
BUDGET_COLOR = "#ff7f0e"
WEIGHT_COLOR = "#2ca02c"
FAILED_COLOR = "#9467bd"
BAND_COLORS = ("#e8eef7", "#f4f4f4")


def figure_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a picture with that many panels."""
    return round(WIDTH_IN * DPI), round((MARGIN_IN + PANEL_IN * panels) * DPI)


@dataclass(frozen=True)
class Layout:
    """Where things landed, in image pixels (origin at the top left): each panel's box
    (left, top, right, bottom), each panel's legend box, and the x of the rollback line (None: no
    rollback)."""

    size: tuple[int, int]
    panels: tuple[tuple[int, int, int, int], ...]
    rollback_x: int | None
    legends: tuple[tuple[int, int, int, int], ...] = ()


def _x(times: list[datetime]) -> np.ndarray:
    """Times as numpy datetime64 in UTC, which matplotlib plots (and its stubs accept)."""
    return np.array([t.astimezone(UTC).replace(tzinfo=None) for t in times], dtype="datetime64[ms]")


def _rate(errors: float, total: float) -> float:
    return errors / total if total > 0 else float("nan")


def _draw_query(ax: Axes, metric: Metric, history: History, result: Replay) -> None:
    grid = history.grid
    samples = history.values.get(metric.name, ())
    times = [grid.time(i) for i, v in enumerate(samples) if v is not None]
    values = [v for v in samples if v is not None]
    ax.plot(_x(times), values, color=VALUE_COLOR, linewidth=0.8, label=f"{metric.name} (recorded)")
    for bound in (metric.max, metric.min):
        if bound is not None:
            ax.axhline(bound, color=BUDGET_COLOR, linewidth=1.5, linestyle="--", label=f"budget {metric.budget()}")


def _draw_compare(ax: Axes, metric: Metric, result: Replay) -> None:
    assert metric.compare is not None
    times: list[datetime] = []
    treatment: list[float] = []
    control: list[float] = []
    budget: list[float] = []
    for evaluation in result.evaluations:
        status = next((m for m in evaluation.metrics if m.name == metric.name), None)
        if status is None or status.treatment is None or status.control is None:
            continue
        t = _rate(status.treatment.errors, status.treatment.total)
        c = _rate(status.control.errors, status.control.total)
        times.append(evaluation.at)
        treatment.append(t)
        control.append(c)
        budget.append(c * metric.compare.max_ratio if metric.compare.max_ratio is not None
                      else c + (metric.compare.max_increase or 0.0))
    ax.plot(_x(times), treatment, color=VALUE_COLOR, linewidth=1.0, label="treatment (stage so far)")
    ax.plot(_x(times), control, color=CONTROL_COLOR, linewidth=1.0, label="control (stage so far)")
    ax.plot(_x(times), budget, color=BUDGET_COLOR, linewidth=1.5, linestyle="--", label=f"budget {metric.budget()}")


def draw(result: Replay, history: History, path: Path) -> Layout:
    """Draw the simulation into a PNG at `path`; returns where its parts landed."""
    spec = result.spec
    metrics = list(spec.analysis.metrics) if spec.analysis is not None else []
    panels = max(1, len(metrics))
    width, height = figure_size(panels)
    fig, axes_array = plt.subplots(panels, 1, sharex=True, squeeze=False,
                                   figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = [row[0] for row in axes_array]
    # Fixed margins (no tight layout), so that the size and the panels' places follow from the count.
    fig.subplots_adjust(left=0.07, right=0.93, top=1 - 0.45 / (height / DPI), bottom=0.35 / (height / DPI),
                        hspace=0.25)
    outcome = {"RolledBack": "rolled back", "Succeeded": "succeeded"}.get(str(result.phase), str(result.phase))
    fig.suptitle(f"featurerollout simulate: flag {spec.flag}, {outcome} "
                 f"(recorded values under the exposure live then)", fontsize=10)
    steps = result.weight_steps()
    rollback = result.rolled_back_at
    for index, ax in enumerate(axes):
        for span in result.stages:
            end = span.end or result.end
            ax.axvspan(span.start, end, color=BAND_COLORS[span.stage % 2], zorder=0)
            ax.text(span.start, 0.02, f" stage {span.stage + 1}: {span.weight:g}%", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="bottom", ha="left", color="#555555")
        if index < len(metrics):
            metric = metrics[index]
            if metric.compare is None:
                _draw_query(ax, metric, history, result)
            else:
                _draw_compare(ax, metric, result)
            failed = [(e.at, m.value) for e in result.evaluations for m in e.metrics
                      if m.name == metric.name and m.result == MetricResult.FAILED and m.value is not None]
            if failed and metric.compare is None:
                ax.plot(_x([t for t, _ in failed]), [v for _, v in failed], "x", color=FAILED_COLOR, markersize=5,
                        label="failed evaluation")
            ax.set_ylabel(metric.name, fontsize=8)
        twin = ax.twinx()
        if steps:
            times = [t for t, _ in steps] + [result.end]
            weights = [w for _, w in steps] + [steps[-1][1]]
            twin.step(times, weights, where="post", color=WEIGHT_COLOR, linewidth=1.2, label="weight % (simulated)")
        twin.set_ylim(0, 105)
        twin.set_ylabel("weight %", fontsize=8, color=WEIGHT_COLOR)
        twin.tick_params(labelsize=7)
        if rollback is not None:
            ax.axvline(rollback, color=ROLLBACK_COLOR, linewidth=2.5, zorder=5, label="rollback")
        ax.set_xlim(result.start, result.end)
        ax.tick_params(labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, loc="upper left", fontsize=7, framealpha=0.8)
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
        share = (rollback - result.start) / (result.end - result.start)
        rollback_x = round(box.x0 + share * (box.x1 - box.x0))
    plt.close(fig)
    return Layout((width, height), tuple(boxes), rollback_x, tuple(legends))
