"""Benchmark: what one exact `compare:` count costs, the old raw-sample read against the summary.

    .venv/bin/python benchmarks/compare_counts.py                      # 80 series, 15 s scrapes, 1h and 24h stages
    .venv/bin/python benchmarks/compare_counts.py --series 80 --scrape 15 --stages 1h,24h --resets 2 --repeat 5

A real Prometheus serves a backfilled history (promtool) of `--series` counter series
(`http_requests_total{flag,variant,code,instance}`, one per pod and code, as an app with 40 pods and
two codes exports them) scraped every `--scrape` s, the longest stage and the lookback long; `--resets`
of them restart (their counters reset) in the middle of every stage. For each stage length, one count
of the selector `http_requests_total{flag="bench"}`, taken at the end of the stage:

 * **raw** (the path before issue 18's rework): `sum(count_over_time(SEL[r]))`, then every raw sample
   `SEL[r]`, counted in Python (stats/counters.py). It refused more than compare.MAX_SAMPLES samples;
   here it reads them anyway, to show what they cost;
 * **summary** (metrics/compare.measure_count): one summary query answered in a few rows, then the raw
   samples of the series with a reset only.

Per path it prints the queries made, the bytes read (the JSON bodies, decoded; and on the wire, as
Prometheus compressed them), the raw samples returned, and the median time per count over `--repeat`
runs (the queries run one after another, as measure_count awaits them). Both counts must be equal: it
exits 1 when they are not. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.history import backfill  # noqa: E402
from tests.support.prometheus import start_prometheus  # noqa: E402

from featurerollout.api import parse_duration  # noqa: E402
from featurerollout.core.measurement import Measurement  # noqa: E402
from featurerollout.edges.metrics.compare import LOOKBACK, CountQuery, matrix_count, measure_count  # noqa: E402

SELECTOR = 'http_requests_total{flag="bench"}'
ORIGIN = datetime(2026, 8, 3, tzinfo=UTC)


@dataclass
class Reader:
    """A Prometheus client with the one method measure_count uses (`query_at`), counting what it reads."""

    client: httpx.Client
    queries: int = 0
    body_bytes: int = 0
    wire_bytes: int = 0
    samples: int = 0
    log: list[str] = field(default_factory=list)

    async def query_at(self, query: str, at: datetime | None) -> Any:
        params = {"query": query} | ({"time": f"{at.timestamp():.3f}"} if at is not None else {})
        response = self.client.get("/api/v1/query", params=params)
        self.queries += 1
        self.body_bytes += len(response.content)
        self.wire_bytes += response.num_bytes_downloaded
        body = response.json()
        if body.get("status") != "success":
            return Measurement.error(f"{query[:80]}...: {body.get('error')}")
        result = body["data"]["result"]
        self.samples += sum(len(item.get("values", [])) for item in result)
        return result


async def raw_count(reader: Reader, count: CountQuery) -> Measurement:
    """The old path: the size, then every raw sample of the stage (no cap here)."""
    await reader.query_at(count.size_query(), count.at_moment)
    result = await reader.query_at(count.samples_query(), count.at_moment)
    return result if isinstance(result, Measurement) else matrix_count(result, count.start)


def history(path: Path, series: int, scrape: int, span: int, resets: int, stages: list[int], end: int) -> None:
    """OpenMetrics text: `series` counters growing by 1-3 a scrape; the first `resets` restart in the
    middle of every stage (their value starts again from 0)."""
    restarts = {end - stage // 2 for stage in stages}
    lines = ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    for index in range(series):
        pod, code = divmod(index, 2)
        labels = f'flag="bench",variant="on",code="{("200", "500")[code]}",instance="pod-{pod}"'
        value = 0
        for moment in range(end - span, end + 1, scrape):
            value += 1 + (moment // scrape + index) % 3
            if index < resets and any(moment - scrape < r <= moment for r in restarts):
                value = 1
            lines.append(f"http_requests_total{{{labels}}} {value} {moment}")
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=80)
    parser.add_argument("--scrape", type=int, default=15, help="seconds between scrapes")
    parser.add_argument("--stages", default="1h,24h", help="stage lengths, comma-separated")
    parser.add_argument("--resets", type=int, default=0, help="series that restart mid-stage")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stages = [int(parse_duration(text).total_seconds()) for text in args.stages.split(",")]
    span = max(stages) + int(LOOKBACK.total_seconds()) + 10 * args.scrape
    end = int(ORIGIN.timestamp()) + span
    failed = False
    with tempfile.TemporaryDirectory(prefix="compare-counts-") as workdir:
        directory = Path(workdir)
        started = time.monotonic()
        history(directory / "app.om.txt", args.series, args.scrape, span, args.resets, stages, end)
        backfill(directory / "app.om.txt", directory / "tsdb")
        print(f"history: {args.series} series x {span // args.scrape + 1} scrapes every {args.scrape} s, "
              f"{args.resets} restarting mid-stage, backfilled in {time.monotonic() - started:.1f} s")
        with start_prometheus(directory / "server", data_dir=directory / "tsdb", retention="3650d") as server, \
                httpx.Client(base_url=server.url, timeout=120, headers={"Accept-Encoding": "gzip"}) as client:
            print(f"{'stage':>6} {'path':>8} {'queries':>8} {'JSON bytes':>12} {'wire bytes':>11} "
                  f"{'samples':>8} {'ms/count':>9}  count")
            for stage in stages:
                at = datetime.fromtimestamp(end - 3, tz=UTC)
                count = CountQuery(SELECTOR, at - timedelta(seconds=stage), at)
                values = []
                for name, path in (("raw", raw_count), ("summary", measure_count)):
                    times, reader = [], Reader(client)
                    for _ in range(args.repeat):
                        reader = Reader(client)
                        begun = time.perf_counter()
                        found = asyncio.run(path(reader, count))  # type: ignore[arg-type]  # Reader has the one method used
                        times.append(time.perf_counter() - begun)
                    values.append(found.value)
                    shown = found.value if found.value is not None else found
                    print(f"{stage // 3600:>5}h {name:>8} {reader.queries:>8} "
                          f"{reader.body_bytes:>12,} {reader.wire_bytes:>11,} {reader.samples:>8,} "
                          f"{1000 * statistics.median(times):>9.1f}  {shown}")
                if values[0] != values[1]:
                    print(f"  MISMATCH: raw {values[0]} != summary {values[1]}")
                    failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
