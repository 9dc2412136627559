"""A week of recorded request counters for `featurerollout simulate`, backfilled into a REAL Prometheus.

    with week_prometheus(tmp_path, bad_hour=BAD_HOUR) as prom:
        ... featurerollout simulate -f ROLLOUT --prometheus prom.url --from WEEK_START --to WEEK_END

The data is what the demo service exposes, `http_requests_total{flag,variant,code}`, scraped every
30 s for the week `WEEK_START` .. `WEEK_END`: traffic follows the day (10 to 30 req/s), the flag was
live at 10% the whole week (variant `on` gets a tenth of the requests), both variants fail at a
baseline of 0.4% to 0.8% that also follows the day. In the `bad_hour`, if any, the `on` variant
fails 20% of its requests. Counts accrue deterministically (no random draws): each counter is the
floor of its expected cumulative count, so the rates are exact and the test reproducible.

The OpenMetrics text is turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`,
and Prometheus is started on that storage with a retention long enough to keep it.
`scripts/simulate-picture` (`make simulate-picture`) draws docs/simulate.png from the same data.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.prometheus import PrometheusServer, start_prometheus

WEEK_START = datetime(2026, 11, 2, tzinfo=UTC)
WEEK_END = WEEK_START + timedelta(days=7)
BAD_HOUR = datetime(2026, 11, 5, 14, tzinfo=UTC)  # day 4, in the rollout's 50% stage
SCRAPE = timedelta(seconds=30)
FLAG = "new-checkout"
LIVE_SHARE = 0.10  # the exposure live while the history was recorded
BAD_RATE = 0.20

# The rollout that the tests and the picture simulate: a slow ramp over the week, one absolute
# budget on the flag's users' error rate (failureLimit 2: the third failure in a row rolls back),
# and one comparison of the flag's users with the others.
ROLLOUT = f"""\
apiVersion: featurerollout.io/v1alpha1
kind: FeatureRollout
metadata: {{name: {FLAG}, namespace: shop}}
spec:
  flag: {FLAG}
  target: {{configMap: {{name: feature-flags}}}}
  stages:
    - {{weight: 10, duration: 24h}}
    - {{weight: 25, duration: 24h}}
    - {{weight: 50, duration: 48h}}
    - {{weight: 100, duration: 24h}}
  analysis:
    interval: 1m
    prometheus: {{address: http://prometheus.monitoring:9090}}
    metrics:
      - name: error-rate
        query: |
          sum(rate(http_requests_total{{flag="{{{{flag}}}}",variant="on",code=~"5.."}}[5m]))
          / sum(rate(http_requests_total{{flag="{{{{flag}}}}",variant="on"}}[5m]))
        max: 0.02
        failureLimit: 2
      - name: vs-control
        compare:
          treatment:
            errors: sum(increase(http_requests_total{{flag="{{{{flag}}}}",variant="on",code=~"5.."}}[{{{{window}}}}]))
            total: sum(increase(http_requests_total{{flag="{{{{flag}}}}",variant="on"}}[{{{{window}}}}]))
          control:
            errors: sum(increase(http_requests_total{{flag="{{{{flag}}}}",variant="off",code=~"5.."}}[{{{{window}}}}]))
            total: sum(increase(http_requests_total{{flag="{{{{flag}}}}",variant="off"}}[{{{{window}}}}]))
          maxIncrease: 0.01
"""
STAGE_STARTS = (WEEK_START, WEEK_START + timedelta(days=1), WEEK_START + timedelta(days=2),
                WEEK_START + timedelta(days=4))


def _rps(moment: datetime) -> float:
    day = (moment - WEEK_START).total_seconds() / 86400
    return 20.0 * (1 + 0.5 * math.sin(2 * math.pi * (day - 0.25)))


def _baseline(moment: datetime) -> float:
    day = (moment - WEEK_START).total_seconds() / 86400
    return 0.006 + 0.002 * math.sin(2 * math.pi * (day - 0.25))


ErrorRate = Callable[[str, datetime], float]  # (variant, moment) -> the share of its requests that fail


def write_counters(path: Path, *, flag: str, start: datetime, end: datetime, scrape: timedelta,
                   shares: dict[str, float], rps: Callable[[datetime], float], error_rate: ErrorRate,
                   lazy: bool) -> None:
    """`http_requests_total{flag,variant,code}` as Prometheus scraped it every `scrape` from `start` to
    `end`, as OpenMetrics text (each series' samples together, in time order). Deterministic: each
    counter is the floor of its expected cumulative count. `lazy`: a `code="500"` series exists only
    from the first scrape after its first error, as client libraries create a labelled counter."""
    steps = int((end - start) / scrape) + 1
    lines = ["# HELP http_requests Requests served, by flag, variant and status code.",
             "# TYPE http_requests counter"]
    for variant, share in shares.items():
        requests_total = errors_total = 0.0
        ok: list[str] = []
        failed: list[str] = []
        for index in range(steps):
            moment = start + scrape * index
            if index > 0:  # what the scrape interval that ends now served
                requests = rps(moment) * share * scrape.total_seconds()
                requests_total += requests
                errors_total += requests * error_rate(variant, moment)
            errors = math.floor(errors_total)
            stamp = f"{moment.timestamp():.0f}"
            labels = f'flag="{flag}",variant="{variant}"'
            ok.append(f'http_requests_total{{{labels},code="200"}} {math.floor(requests_total) - errors} {stamp}')
            if errors > 0 or not lazy:
                failed.append(f'http_requests_total{{{labels},code="500"}} {errors} {stamp}')
        lines.extend(ok)
        lines.extend(failed)
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


def write_openmetrics(path: Path, bad_hour: datetime | None) -> None:
    """The week's counters (every series created up front)."""
    def error_rate(variant: str, moment: datetime) -> float:
        if variant == "on" and bad_hour is not None and bad_hour < moment <= bad_hour + timedelta(hours=1):
            return BAD_RATE
        return _baseline(moment)

    write_counters(path, flag=FLAG, start=WEEK_START, end=WEEK_END, scrape=SCRAPE,
                   shares={"on": LIVE_SHARE, "off": 1 - LIVE_SHARE}, rps=_rps, error_rate=error_rate, lazy=False)


def find_promtool() -> str | None:
    return shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """TSDB blocks from the OpenMetrics file, with promtool."""
    promtool = find_promtool()
    if promtool is None:
        raise RuntimeError("promtool was not found (it comes with the Debian package prometheus: make prometheus)")
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
         str(openmetrics), str(data_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def serving(directory: Path, write: Callable[[Path], None]) -> Iterator[PrometheusServer]:
    """A real Prometheus serving, from backfilled blocks, what `write` writes as OpenMetrics."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "history.om.txt"
    write(source)
    data_dir = directory / "tsdb"
    backfill(source, data_dir)
    with start_prometheus(directory / "server", data_dir=data_dir, retention="3650d",
                          extra_args=["--query.max-samples=200000000"]) as server:
        yield server


def week_prometheus(
    directory: Path, *, bad_hour: datetime | None
) -> contextlib.AbstractContextManager[PrometheusServer]:
    """A real Prometheus serving the week (with the bad hour, if given)."""
    return serving(directory, lambda path: write_openmetrics(path, bad_hour))


# --- a short history around now, for the live operator and the replay on the same data ----------


def write_lazy_history(path: Path, *, flag: str, start: datetime, end: datetime, scrape: timedelta,
                       treatment_share: float, rps: float, control_errors: float, bad_from: datetime,
                       bad_rate: float) -> None:
    """A lazily instrumented app's counters, scraped every `scrape` from `start` to `end` (which may lie
    in the future: Prometheus then answers each instant with what was scraped by then). The treatment
    (`on`) has no error series before `bad_from`, from when it fails `bad_rate` of its requests; the
    control fails `control_errors` throughout."""
    def error_rate(variant: str, moment: datetime) -> float:
        if variant == "off":
            return control_errors
        return bad_rate if moment > bad_from else 0.0

    write_counters(path, flag=flag, start=start, end=end, scrape=scrape,
                   shares={"on": treatment_share, "off": 1 - treatment_share}, rps=lambda _: rps,
                   error_rate=error_rate, lazy=True)


def history_prometheus(directory: Path, **history: Any) -> contextlib.AbstractContextManager[PrometheusServer]:
    """A real Prometheus serving `write_lazy_history(**history)`."""
    return serving(directory, lambda path: write_lazy_history(path, **history))
