"""What a counter counted over a stage, exactly, from its raw samples. Pure: no I/O, no clock.

Why not `increase(x[window])`: Prometheus extrapolates `increase()` to the edges of its window, so
early in a stage, when the window holds a few scrapes, it inflates both errors and totals by up to
2x; the sequential test then sees more sample than there is, its interval is too narrow, and a flag
that does no harm is rolled back more often than the confidence allows (1.1-1.6% against 1% in
the A/A simulation of docs/guardrails.md). The counts here are differences of the scraped values
themselves, anchored at the stage's start:

 * a series that had a sample at or before the start counts from that sample (its baseline);
 * a series whose first sample comes after the start counts from 0: client libraries create a
   labelled counter at its first increment, so its first scraped value is what it counted;
 * a drop in value is a counter reset (the process restarted): what follows counts from 0.

metrics/compare.py has Prometheus do this arithmetic for the series without a reset (the last
value minus the baseline, or the last value) and runs the functions here on the raw samples of the
series with a reset only.

The one thing no scrape can tell is what happened between the last scrape and `now`: those
requests are counted at the next look.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Sample", "series_increase", "stage_increase"]

Sample = tuple[float, float]  # (unix seconds, value)


def series_increase(samples: Sequence[Sample], start: float) -> float:
    """What one counter series counted after `start`, from its raw samples (any order)."""
    previous: float | None = None
    counted = 0.0
    for moment, value in sorted(samples):
        if moment > start:
            if previous is None or value < previous:  # new since the start, or reset: from 0
                counted += value
            else:
                counted += value - previous
        previous = value
    return counted


def stage_increase(series: Iterable[Sequence[Sample]], start: float) -> float:
    """The sum over series of what each counted after `start`."""
    return sum(series_increase(samples, start) for samples in series)
