"""Measuring a compare metric: its four counts (errors and totals of treatment and control) over the
stage so far, as one Measurement that carries them.

Two ways to write a count:

 * **A counter selector** (`http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}`), or the
   older `sum(increase(SELECTOR[{{window}}]))`, which means the same: the operator counts exactly what
   the counters counted since the stage's start (each series from its baseline, its last sample at or
   before the start within LOOKBACK; a series created mid-stage from 0; resets handled), without
   `increase()`'s extrapolation. One query (`CountQuery.summary_query`, answered in a few rows however
   long the stage) has Prometheus count the series without a counter reset in the stage: last value
   minus baseline. Only the series with a reset have their raw samples read, and counted here
   (stats/counters.py); MAX_SAMPLES caps those. These are instant queries evaluated at `now`:
   `count_queries` says which, for a replay at any moment.
 * **Any other PromQL expression** yielding one number: run as written (the old meaning; an
   `increase()` in it extrapolates, and docs/guardrails.md says what that costs).

An errors count without data (no error series yet: client libraries create a labelled counter at
its first increment) is 0 errors when that arm's total has data. Any part that errors makes the
whole measurement an Error naming it; a total without data makes it NoData naming it. The
statistics are not done here: the engine does them (featurerollout.core.guardrail).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from featurerollout.api import Compare
from featurerollout.core.measurement import Measurement, MeasurementKind
from featurerollout.edges.metrics.interface import MetricProvider
from featurerollout.edges.metrics.prometheus import classify_result
from featurerollout.stats.counters import Sample, stage_increase
from featurerollout.stats.sequential import Arm

# How far before the stage's start a series' last sample may lie to be its baseline: Prometheus's
# own lookback for instant queries. A series with no sample in it counts from 0.
LOOKBACK = timedelta(minutes=5)
# The most raw samples one count may read, of the series with a counter reset in the stage (the
# others are counted by Prometheus, in a few numbers): beyond it the count is an Error naming the cap.
MAX_SAMPLES = 250_000
_LOOKBACK_MS = int(LOOKBACK.total_seconds() * 1000)
# The label that tells a summary_query's rows apart (a scraped series cannot carry a `__` label).
_ROW = "__count__"

# A PromQL vector selector: a metric name, label matchers in braces, or both; nothing else.
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_SELECTOR_RE = re.compile(
    rf"^\s*(?:[a-zA-Z_:][a-zA-Z0-9_:]*\s*(?:\{{(?:[^{{}}\"'`]|{_STRING})*\}})?|\{{(?:[^{{}}\"'`]|{_STRING})*\}})\s*$"
)
# The older form, which asks for exactly what the selector's exact count gives (without extrapolation).
_WINDOWED_RE = re.compile(
    r"^\s*sum\s*\(\s*increase\s*\(\s*(?P<selector>.+?)\s*\[\s*\{\{\s*window\s*\}\}\s*\]\s*\)\s*\)\s*$", re.DOTALL
)

# The four queries, by their path in the spec under the metric.
PARTS: tuple[tuple[str, str], ...] = (
    ("treatment", "errors"),
    ("treatment", "total"),
    ("control", "errors"),
    ("control", "total"),
)


def compare_queries(compare: Compare) -> dict[str, str]:
    """The four query templates by path: `compare.treatment.errors`, ..."""
    return {
        f"compare.{arm}.{part}": getattr(getattr(compare, arm), part) for arm, part in PARTS
    }


def is_selector(query: str) -> bool:
    """Whether a (rendered) query is a bare vector selector, counted exactly by the operator."""
    return _SELECTOR_RE.match(query) is not None


def counter_selector(template: str) -> str | None:
    """The counter selector a count template asks about, when the operator counts it exactly: the
    template itself if it is a selector, or SELECTOR in `sum(increase(SELECTOR[{{window}}]))`."""
    found = _WINDOWED_RE.match(template)
    candidate = found.group("selector") if found else template
    # Test the shape with placeholders filled by something inert ({{flag}} sits inside quotes).
    return candidate.strip() if is_selector(re.sub(r"\{\{[^{}]*\}\}", "x", candidate)) else None


@dataclass(frozen=True)
class CountQuery:
    """One exact count: what the counters matched by `selector` counted from `start` to `at`, read from
    their samples between LOOKBACK before `start` (for each series' baseline) and `at`.

    All its queries are instant queries evaluated at `at_moment` (`at` to the millisecond, as
    Prometheus keeps time). `summary_query` answers with a few numbers whatever the stage's length;
    only the series with a counter reset in the range need their raw samples (`samples_query`)."""

    selector: str  # rendered
    start: datetime
    at: datetime

    @property
    def start_ms(self) -> int:
        return math.floor(self.start.timestamp() * 1000)

    @property
    def at_ms(self) -> int:
        return max(self.start_ms, math.floor(self.at.timestamp() * 1000))

    @property
    def at_moment(self) -> datetime:
        """The moment the queries are evaluated at: `at`, to the millisecond."""
        return datetime.fromtimestamp(self.at_ms / 1000, tz=UTC)

    @property
    def range_ms(self) -> int:
        """The range, back from `at`, that holds the stage and the LOOKBACK before it."""
        return self.at_ms - self.start_ms + _LOOKBACK_MS

    def samples_query(self, selector: str | None = None) -> str:
        """The instant query that returns the raw samples of `selector` (the count's own by default)
        over the range."""
        return f"{selector or self.selector}[{self.range_ms}ms]"

    def size_query(self) -> str:
        """The instant query that counts the samples of all the selector's series over the range."""
        return f"sum(count_over_time({self.samples_query()}))"

    def summary_query(self) -> str:
        """One instant query, whose answer grows with the number of series that reset, not with the
        stage's length. Its rows, told apart by the label `__count__` (the rest carry a series' labels):

         * `exact`: what the series WITHOUT a counter reset in the range counted: per series, its last
           value minus its baseline (its last value at or before `start`, within LOOKBACK), or its last
           value when it has no baseline (created mid-stage: counted from 0). `last_over_time` keeps
           the series that went away before `at` (a pod replaced mid-stage), and takes the baseline as
           the raw samples would (`S @ start` would miss one exactly LOOKBACK before the start, and any
           series whose last sample is a staleness marker); matching ignores the metric name;
         * `samples` / `all`: how many raw samples the series WITH a reset / all series hold;
         * one row per series with a reset (its labels and metric name), whose raw samples
           `measure_count` then reads: only their values tell what was counted around a reset."""
        window = self.samples_query()
        last = f"last_over_time({window})"
        base = f"last_over_time({self.selector}[{_LOOKBACK_MS}ms] @ {self.start_ms / 1000:.3f})"
        resets = f"resets({window})"
        exact = f"sum((({last} - {base}) or ({last} unless {base})) and ({resets} == 0))"
        reset_samples = f"sum(count_over_time({window}) and ({resets} > 0))"
        return (
            f'label_replace({exact}, "{_ROW}", "exact", "", "")'
            f' or label_replace({reset_samples}, "{_ROW}", "samples", "", "")'
            f' or label_replace({self.size_query()}, "{_ROW}", "all", "", "")'
            f" or ({last} and ({resets} > 0))"
        )


def count_queries(
    compare: Compare, render: Callable[[str], str], *, start: datetime, at: datetime
) -> dict[str, CountQuery | str]:
    """Per part (`compare.treatment.errors`, ...): its exact CountQuery, or the rendered expression
    that is run as written. Pure: what the operator asks Prometheus at the time `at` for a stage that
    began at `start`. Raises ValueError (naming the part) for a template that does not render."""
    out: dict[str, CountQuery | str] = {}
    for path, template in compare_queries(compare).items():
        selector = counter_selector(template)
        try:
            rendered = render(selector if selector is not None else template)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        out[path] = CountQuery(rendered, start, at) if selector is not None else rendered
    return out


def matrix_count(result: Any, start: datetime) -> Measurement:
    """Pure: the exact count of an instant query's range-vector answer (`data.result`), from `start`.
    No series at all is NoData (the caller decides what that means for the part)."""
    series = _raw_series(result)
    if isinstance(series, Measurement):
        return series
    if not series:
        return Measurement.no_data("no series matched over the stage")
    return Measurement.of(stage_increase(series.values(), start.timestamp()))


def _raw_series(result: Any) -> dict[Labels, list[Sample]] | Measurement:
    """A range-vector answer's raw samples by series (its labels), or the Error it is."""
    if not isinstance(result, list) or not all(
        isinstance(item, dict) and "values" in item and isinstance(item.get("metric", {}), dict) for item in result
    ):
        return Measurement.error(f"Prometheus did not answer with raw samples: {str(result)[:200]}")
    try:
        return {
            _labels(item.get("metric", {})): [(float(t), float(v)) for t, v in item["values"]] for item in result
        }
    except (TypeError, ValueError) as error:
        return Measurement.error(f"Prometheus answered with an unexpected sample: {error}")


Labels = tuple[tuple[str, str], ...]


def _labels(metric: dict[str, Any]) -> Labels:
    return tuple(sorted((str(name), str(value)) for name, value in metric.items()))


def series_selector(labels: Labels) -> str:
    """A selector of exactly the labels of one series (the metric name among them), values written as
    PromQL strings. It also matches a series with MORE labels: the caller keeps only the exact one."""
    return "{" + ",".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in labels) + "}"


@dataclass(frozen=True)
class Summary:
    """The answer to a CountQuery's summary_query."""

    exact: float  # counted by the series without a reset
    reset_samples: int  # raw samples of the series with a reset
    all_samples: int  # raw samples of all the series
    reset_series: tuple[Labels, ...]


def summary(result: Any) -> Summary | Measurement:
    """Pure: a summary_query's answer, or the Error it is; NoData when no series matched at all."""
    if not isinstance(result, list) or not all(
        isinstance(item, dict) and isinstance(item.get("metric"), dict) and isinstance(item.get("value"), list)
        for item in result
    ):
        return Measurement.error(f"Prometheus did not answer with an instant vector: {str(result)[:200]}")
    rows: dict[str, float] = {}
    resets: list[Labels] = []
    try:
        for item in result:
            row = item["metric"].get(_ROW)
            if row is None:
                resets.append(_labels(item["metric"]))
            else:
                rows[str(row)] = float(item["value"][1])
    except (TypeError, ValueError, IndexError) as error:
        return Measurement.error(f"Prometheus answered with an unexpected sample: {error}")
    if "all" not in rows:
        return Measurement.no_data("no series matched over the stage")
    return Summary(rows.get("exact", 0.0), int(rows.get("samples", 0)), int(rows["all"]), tuple(sorted(resets)))


async def measure_count(provider: MetricProvider, count: CountQuery) -> Measurement:
    """Read one exact count: the summary (a few numbers), then the raw samples of the series with a
    counter reset only, refused beyond MAX_SAMPLES."""
    query_at = getattr(provider, "query_at", None)
    if query_at is None:
        return Measurement.error(f"this metrics provider cannot read the raw samples of {count.selector}")
    answer = await query_at(count.summary_query(), count.at_moment)
    found = answer if isinstance(answer, Measurement) else summary(answer)
    if isinstance(found, Measurement):
        return found
    if not found.reset_series:
        return Measurement.of(found.exact)
    if found.reset_samples > MAX_SAMPLES:
        return Measurement.error(
            f"{count.selector} has {found.reset_samples} samples over the stage in series with a counter reset, "
            f"more than the {MAX_SAMPLES} the operator reads for one count (compare.MAX_SAMPLES): match fewer "
            "series (e.g. drop a label with a recording rule that sums the counter by flag, variant and code) "
            "or shorten the stage"
        )
    # One read of every series when the reset ones hold most of the samples; else one per reset series.
    if 2 * found.reset_samples >= found.all_samples:
        selectors = [count.selector]
    else:
        selectors = [series_selector(labels) for labels in found.reset_series]
    answers = await asyncio.gather(*(query_at(count.samples_query(s), count.at_moment) for s in selectors))
    read: dict[Labels, list[Sample]] = {}  # by series: a series with more labels may answer twice
    for raw in answers:
        series = raw if isinstance(raw, Measurement) else _raw_series(raw)
        if isinstance(series, Measurement):
            return series
        read.update(series)
    reset = (read[labels] for labels in found.reset_series if labels in read)
    return Measurement.of(found.exact + stage_increase(reset, count.start_ms / 1000))


def counts_measurement(values: dict[str, Measurement]) -> Measurement:
    """Four measurements (by path, as `compare_queries` names them) as one compare Measurement.
    An errors part without data is 0 errors when its arm's total has data."""
    for path, measurement in values.items():
        if measurement.kind == MeasurementKind.ERROR:
            return Measurement.error(f"{path}: {measurement.detail}")
    # The totals first: without one there is nothing to compare, whatever the errors say.
    for path, measurement in sorted(values.items(), key=lambda item: not item[0].endswith(".total")):
        if measurement.kind != MeasurementKind.VALUE or measurement.value is None:
            if path.endswith(".errors"):
                continue  # its arm's total has data, so no error series yet: none counted
            return Measurement.no_data(
                f"{path}: {measurement.detail or 'no data'} (no request counted for this arm: does the query "
                "match the app's series, and has the arm had traffic?)"
            )
    number = {path: float(m.value or 0.0) if m.kind == MeasurementKind.VALUE else 0.0 for path, m in values.items()}
    for arm in ("treatment", "control"):
        errors, total = number[f"compare.{arm}.errors"], number[f"compare.{arm}.total"]
        if errors < 0 or total < 0:
            return Measurement.error(f"compare.{arm}: counts must not be negative ({errors:g} of {total:g})")
        if errors > total * (1 + 1e-9):
            return Measurement.error(
                f"compare.{arm}: more errors ({errors:g}) than requests ({total:g}): do errors and total "
                "count the same requests over the same window?"
            )
    return Measurement.of_counts(
        Arm(number["compare.treatment.errors"], number["compare.treatment.total"]),
        Arm(number["compare.control.errors"], number["compare.control.total"]),
    )


async def measure_compare(
    provider: MetricProvider,
    compare: Compare,
    render: Callable[[str], str],
    *,
    start: datetime | None = None,
    at: datetime | None = None,
) -> Measurement:
    """The four counts of the stage that began at `start`, as of `at`, concurrently, as one Measurement.

    Without `start` and `at` (no stage yet), or with a provider that cannot read raw samples, a count
    written in the older `sum(increase(...[{{window}}]))` form is run as written; a bare selector
    then has no meaning and is an Error."""
    exact = start is not None and at is not None and getattr(provider, "query_at", None) is not None
    moment = at or datetime.now().astimezone()
    try:
        parts = count_queries(compare, render, start=start or moment, at=moment)
    except ValueError as error:
        return Measurement.error(str(error))
    if not exact:
        for path, template in compare_queries(compare).items():
            if isinstance(parts[path], CountQuery):
                if _WINDOWED_RE.match(template) is None:
                    return Measurement.error(f"{path}: a counter selector is counted over a stage: no stage has begun")
                parts[path] = render(template)

    async def one(part: CountQuery | str) -> Measurement:
        if isinstance(part, CountQuery):
            return await measure_count(provider, part)
        if exact:  # evaluated at `at` too, so that a replay at that moment asks the very same
            answer = await provider.query_at(part, at)  # type: ignore[attr-defined]
            return answer if isinstance(answer, Measurement) else classify_result(answer)
        return await provider.measure(part)

    results = await asyncio.gather(*(one(part) for part in parts.values()))
    return counts_measurement(dict(zip(parts, results, strict=True)))
