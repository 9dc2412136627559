"""Benchmark: what N rollouts UNDER ANALYSIS cost one operator replica (issue 13).

    .venv/bin/python benchmarks/active_rollouts.py                 # 1,000 rollouts x 2 metrics, 10 s, 300 s
    .venv/bin/python benchmarks/active_rollouts.py --duration 120 --compare-duration 60

Everything real, on loopback: a small exporter serving `bench_requests_total{flag,code}` for every
flag (counters that grow at a steady rate), a real Prometheus scraping it, `featurerollout-sandbox`
as the API server (its request log counts the operator's requests), and `featurerollout run`.

1. setup: one ConfigMap per `--per-configmap` rollouts, then N FeatureRollouts holding a 1 h first
   stage, each with 2 metrics (an error ratio and a traffic floor) at `--interval`;
2. catch-up: start the operator; time until every rollout is at weight 10;
3. measure (`--duration` s after `--settle` s): the operator's CPU and peak RSS (/proc), Prometheus
   queries/s (the operator's `featurerollout_prometheus_queries_total`, and Prometheus's own count of
   /api/v1/query requests), API writes/s (the sandbox's request log), analysis lag p50/p99 (the
   operator's `featurerollout_analysis_lag_seconds`, interpolated within its buckets), and with
   `--profile` a py-spy profile of the operator (its top frames are printed);
4. compare: restart the operator with `--no-query-batching` and measure queries/s (and lag) for
   `--compare-duration` s; the ratio of the two is printed.

It prints progress while it runs, a summary at the end, and exits 1 when a goal is missed (CPU >=
0.5 core, peak RSS >= 250 MiB, lag p99 >= 1 s), 2 when the run failed. Not a test: pytest does not
collect it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for entry in (str(REPO), str(REPO / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from idle_rollouts import (  # noqa: E402
    BENCH_USER_AGENT,
    CpuClock,
    by_verb,
    create_objects,
    ensure_running,
    fail,
    memory_mib,
    pid_of,
    rollout_name,
    say,
    statuses,
    writes_of,
)
from kubernetes import config as kube_config  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tests.support.cluster import Cluster as Sandbox  # noqa: E402  (the sandbox is one kind of Cluster)
from tests.support.cluster import Process, start_operator, start_sandbox  # noqa: E402
from tests.support.prometheus import free_port, start_prometheus, wait_for_query  # noqa: E402
from tests.support.real_server import AuditLog  # noqa: E402

from tools import real_apiserver  # noqa: E402

GOAL_CORES = 0.5
GOAL_RSS_MIB = 250.0
GOAL_LAG_P99 = 1.0
FIRST_WEIGHT = 10  # idle_rollouts.STAGES: the rollouts are created by its create_objects
OK_PER_SECOND, ERRORS_PER_SECOND = 20.0, 0.02  # per flag: an error ratio of 0.001, under the 0.01 budget

METRICS = [
    {"name": "error-rate", "max": 0.01,
     "query": 'sum(rate(bench_requests_total{flag="{{flag}}",code="500"}[1m]))'
              ' / sum(rate(bench_requests_total{flag="{{flag}}"}[1m]))'},
    {"name": "traffic", "min": 1,
     "query": 'sum(rate(bench_requests_total{flag="{{flag}}"}[1m]))'},
]


# --- the exporter: every flag's request counters -----------------------------------------------


@contextmanager
def flag_exporter(flags: list[str]) -> Iterator[int]:
    """Serve /metrics with `bench_requests_total{flag,code}` growing steadily for every flag."""
    started = time.time()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            elapsed = time.time() - started + 60  # as if the service had run a minute already
            ok, errors = f"{OK_PER_SECOND * elapsed:.3f}", f"{ERRORS_PER_SECOND * elapsed:.3f}"
            lines = ["# TYPE bench_requests_total counter"]
            for flag in flags:
                lines.append(f'bench_requests_total{{flag="{flag}",code="200"}} {ok}')
                lines.append(f'bench_requests_total{{flag="{flag}",code="500"}} {errors}')
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


# --- scraping the operator's and Prometheus's own metrics --------------------------------------


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name (a histogram's _bucket/_count/_sum included) from a /metrics page."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in samples.get(name, []) if all(ls.get(k) == want for k, want in labels.items()))


def buckets(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> list[tuple[float, float]]:
    return sorted((float(ls["le"]), v) for ls, v in samples.get(f"{name}_bucket", []))


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float | None:
    """The q-quantile of the observations between two scrapes of a histogram, interpolated linearly
    within the bucket it falls in (as PromQL's histogram_quantile does)."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    if not counts or counts[-1][1] <= 0:
        return None
    rank = q * counts[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in counts:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            span = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / span if span else 1.0)
        lower_le, lower_count = le, count
    return None


def operator_metrics_url(operator: Process, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ensure_running(operator, "the operator")
        found = re.search(r"serving the operator's metrics on :(\d+)/metrics", operator.log())
        if found:
            return f"http://127.0.0.1:{found.group(1)}/metrics"
        time.sleep(0.2)
    raise fail("the operator never said where its metrics are")


# --- phases ------------------------------------------------------------------------------------


@dataclass
class Window:
    """What one measured window saw."""

    label: str
    seconds: float = 0.0
    cpu: float = 0.0
    rss_max: float = 0.0
    peak_rss: float = 0.0
    queries: float = 0.0
    queries_batched: float = 0.0
    prometheus_queries: float = 0.0
    evaluations: float = 0.0
    lag_p50: float | None = None
    lag_p99: float | None = None
    requests: Counter[str] = field(default_factory=Counter)
    writes: int = 0
    conflicts: int = 0
    target_writes: dict[str, float] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)

    @property
    def cores(self) -> float:
        return self.cpu / self.seconds if self.seconds else 0.0

    def per_second(self, value: float) -> float:
        return value / self.seconds if self.seconds else 0.0


def catch_up(sandbox: Sandbox, operator: Process, rollouts: int, timeout: float) -> float:
    started = time.monotonic()
    last = 0.0
    while True:
        ensure_running(operator, "the operator")
        count = sum(1 for s in statuses(sandbox).values() if s.get("currentWeight") == FIRST_WEIGHT)
        now = time.monotonic()
        if now - last >= 5 or count == rollouts:
            say(f"catch-up: {count}/{rollouts} at weight {FIRST_WEIGHT} ({now - started:.0f} s)")
            last = now
        if count == rollouts:
            return now - started
        if now - started > timeout:
            raise fail(f"only {count}/{rollouts} rollouts reached weight {FIRST_WEIGHT} in {timeout:.0f} s")
        time.sleep(2.0)


def py_spy_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        say("py-spy is not installed (pip install py-spy): no profile")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50", "--nonblocking",
         "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )


def profile_summary(path: Path, top: int = 25) -> list[str]:
    """The frames in most samples (inclusive, each frame counted once per stack), from py-spy's raw
    (collapsed) output; and how much of the time was spent where, by thread kind."""
    if not path.exists():
        return ["(no profile written)"]
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        threads[re.sub(r"[-_]?\d+.*$", "", frames[0])[:40]] += count
        for frame in set(frames[1:]):
            inclusive[short(frame)] += count
        leaves[short(frames[-1])] += count
    lines = [f"{samples} samples (active threads only); by thread: "
             + ", ".join(f"{name} {100 * n / samples:.0f}%" for name, n in threads.most_common(6))]
    interesting = [(f, c) for f, c in inclusive.most_common() if not re.match(BOILERPLATE, f)]
    lines.append("inclusive (the frame or anything it called), start-up and thread plumbing left out:")
    lines += [f"{100 * count / samples:5.1f}%  {frame[:150]}" for frame, count in interesting[:top]]
    lines.append("self (the innermost frame of each sample):")
    lines += [f"{100 * count / samples:5.1f}%  {frame[:150]}" for frame, count in leaves.most_common(12)]
    return lines


# Frames every sample of a thread has (interpreter start-up, the event loop's and threads' plumbing).
BOILERPLATE = (r"(Thread\.|_worker |_WorkItem|_run_code|_run_module|<module>|main \(featurerollout/cli|run \(|"
               r"Runner\.|BaseEventLoop\.run_|update_wrapper|ValidateCallWrapper)")


def short(frame: str) -> str:
    """A py-spy frame without the directories before the package."""
    return re.sub(r" \(/.*?/(site-packages|lib/python3\.\d+|operator)/", " (", frame)


def measure(label: str, sandbox: Sandbox, operator: Process, metrics_url: str, prometheus_url: str,
            seconds: float, settle: float, profile: Path | None) -> Window:
    say(f"{label}: settling for {settle:.0f} s")
    time.sleep(settle)
    pid = pid_of(operator)
    window = Window(label)
    sandbox.log.clear_requests()
    before, prom_before = scrape(metrics_url), scrape(f"{prometheus_url}/metrics")
    cpu = CpuClock(pid)
    started = time.monotonic()
    spy = py_spy_profile(pid, min(seconds, 60), profile) if profile is not None else None
    next_report = started + 15
    while (now := time.monotonic()) - started < seconds:
        ensure_running(operator, "the operator")
        rss, _ = memory_mib(pid)
        window.rss_max = max(window.rss_max, rss)
        if now >= next_report:
            sample = scrape(metrics_url)
            elapsed = now - started
            queries = total(sample, "featurerollout_prometheus_queries_total") - total(
                before, "featurerollout_prometheus_queries_total")
            lag99 = quantile(0.99, buckets(before, "featurerollout_analysis_lag_seconds"),
                             buckets(sample, "featurerollout_analysis_lag_seconds"))
            say(f"{label} {elapsed:.0f}/{seconds:.0f} s: CPU {cpu.used() / elapsed:.3f} core, RSS {rss:.0f} MiB, "
                f"{queries / elapsed:.1f} queries/s, lag p99 {lag99 if lag99 is None else round(lag99, 3)} s")
            next_report += 15
        time.sleep(min(1.0, max(0.0, seconds - (now - started))))
    window.seconds = time.monotonic() - started
    window.cpu = cpu.used()
    after, prom_after = scrape(metrics_url), scrape(f"{prometheus_url}/metrics")
    rss, window.peak_rss = memory_mib(pid)
    window.rss_max = max(window.rss_max, rss)
    for name, attr in (("featurerollout_prometheus_queries_total", "queries"),):
        setattr(window, attr, total(after, name) - total(before, name))
    window.queries_batched = (total(after, "featurerollout_prometheus_queries_total", batched="true")
                              - total(before, "featurerollout_prometheus_queries_total", batched="true"))
    handler = "/api/v1/query"
    window.prometheus_queries = (total(prom_after, "prometheus_http_requests_total", handler=handler)
                                 - total(prom_before, "prometheus_http_requests_total", handler=handler))
    window.evaluations = (total(after, "featurerollout_analysis_lag_seconds_count")
                          - total(before, "featurerollout_analysis_lag_seconds_count"))
    lag_before, lag_after = (buckets(before, "featurerollout_analysis_lag_seconds"),
                             buckets(after, "featurerollout_analysis_lag_seconds"))
    window.lag_p50, window.lag_p99 = quantile(0.5, lag_before, lag_after), quantile(0.99, lag_before, lag_after)
    window.target_writes = {r: total(after, "featurerollout_target_writes_total", result=r)
                            - total(before, "featurerollout_target_writes_total", result=r)
                            for r in ("ok", "conflict", "error")}
    records = [r for r in sandbox.log.requests() if r["user_agent"] != BENCH_USER_AGENT]
    window.requests = by_verb(records)
    window.writes = len(writes_of(records))
    window.conflicts = sum(1 for r in records if r["status"] == 409)
    if spy is not None and profile is not None:
        spy.wait(timeout=120)
        window.profile = profile_summary(profile)
    return window


# --- the report --------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.3f} {unit}"


def report(args: argparse.Namespace, catchup: float, on: Window, off: Window | None) -> list[str]:
    due = args.rollouts * len(METRICS) / args.interval_seconds
    rows = [
        ("rollouts x metrics, interval", f"{args.rollouts} x {len(METRICS)}, {args.interval}",
         f"{due:.0f} queries/s due"),
        ("catch-up: all at weight 10", f"{catchup:.1f} s", ""),
        ("window", f"{on.seconds:.0f} s", "after the catch-up and --settle"),
        ("operator CPU", f"{on.cores:.3f} core", f"goal < {GOAL_CORES}: {'ok' if on.cores < GOAL_CORES else 'MISSED'}"),
        ("operator peak RSS (VmHWM)", f"{on.peak_rss:.1f} MiB",
         f"goal < {GOAL_RSS_MIB:.0f}: {'ok' if on.peak_rss < GOAL_RSS_MIB else 'MISSED'}"),
        ("evaluations/s (rollouts)", f"{on.per_second(on.evaluations):.1f}",
         f"{args.rollouts / args.interval_seconds:.0f}/s due"),
        ("analysis lag p50 / p99", f"{fmt(on.lag_p50)} / {fmt(on.lag_p99)}",
         f"goal p99 < {GOAL_LAG_P99} s: {'ok' if on.lag_p99 is not None and on.lag_p99 < GOAL_LAG_P99 else 'MISSED'}"),
        ("Prometheus queries/s (operator)", f"{on.per_second(on.queries):.2f}",
         f"{on.per_second(on.queries_batched):.2f} grouped; Prometheus counted "
         f"{on.per_second(on.prometheus_queries):.2f}/s"),
        ("API writes/s", f"{on.per_second(on.writes):.2f}",
         ", ".join(f"{k}: {v / on.seconds:.2f}/s" for k, v in sorted(on.requests.items())
                   if k.split()[0] in ("create", "update", "patch", "delete"))),
        ("API reads/s", f"{on.per_second(sum(on.requests.values()) - on.writes):.2f}",
         ", ".join(f"{k}: {v / on.seconds:.2f}/s" for k, v in sorted(on.requests.items())
                   if k.split()[0] not in ("create", "update", "patch", "delete"))),
        ("409 Conflicts", str(on.conflicts), f"target writes: {on.target_writes}"),
    ]
    if off is not None:
        ratio = (off.queries / off.seconds) / (on.queries / on.seconds) if on.queries and off.seconds else None
        rows += [
            ("--no-query-batching: window", f"{off.seconds:.0f} s", ""),
            ("--no-query-batching: queries/s", f"{off.per_second(off.queries):.2f}",
             f"Prometheus counted {off.per_second(off.prometheus_queries):.2f}/s; "
             f"ratio off/on = {ratio:.1f}x" if ratio else ""),
            ("--no-query-batching: CPU, lag p50/p99", f"{off.cores:.3f} core",
             f"{fmt(off.lag_p50)} / {fmt(off.lag_p99)}; evaluations/s {off.per_second(off.evaluations):.1f}"),
        ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print("\nsummary\n" + "-" * 100)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {note}")
    print("-" * 100)
    for window in (on, off):
        if window is not None and window.profile:
            print(f"py-spy profile ({window.label}), frames by inclusive share of samples:")
            for line in window.profile:
                print("  " + line)
    missed = []
    if on.cores >= GOAL_CORES:
        missed.append(f"CPU {on.cores:.3f} core >= {GOAL_CORES}")
    if on.peak_rss >= GOAL_RSS_MIB:
        missed.append(f"peak RSS {on.peak_rss:.1f} MiB >= {GOAL_RSS_MIB:.0f}")
    if on.lag_p99 is None or on.lag_p99 >= GOAL_LAG_P99:
        missed.append(f"lag p99 {fmt(on.lag_p99)} >= {GOAL_LAG_P99} s")
    print("goals: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return missed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="rollouts, each with 2 metrics (default 1000)")
    parser.add_argument("--interval", default="10s", help="analysis interval (default 10s)")
    parser.add_argument("--duration", type=float, default=300, help="measured window, seconds (default 300)")
    parser.add_argument("--compare-duration", type=float, default=60,
                        help="window with --no-query-batching, seconds (default 60; 0 skips it)")
    parser.add_argument("--settle", type=float, default=20, help="seconds after the catch-up before measuring")
    parser.add_argument("--per-configmap", type=int, default=50,
                        help="rollouts sharing one flagd ConfigMap (default 50)")
    parser.add_argument("--apiserver", choices=("sandbox", "real"), default="sandbox",
                        help="the API server: `featurerollout-sandbox` (default, as idle_rollouts.py), or the real "
                        "kube-apiserver that `make apiserver` builds (requests counted from its audit log)")
    parser.add_argument("--scrape-interval", default="5s", help="Prometheus's scrape interval (default 5s)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds the catch-up (every rollout at its first weight) may take before the run "
                        "gives up (default 900)")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator for up to 60 s of each window")
    parser.add_argument("--operator-arg", action="append", default=[], metavar="ARG",
                        help="pass ARG to `featurerollout run` (repeatable), e.g. "
                        "--operator-arg=--analysis-status-every=60")
    parser.add_argument("--workdir", type=Path,
                        help="keep kubeconfigs, logs and profiles here (default: a temporary directory, removed "
                        "after a successful run without --profile)")
    args = parser.parse_args(argv)
    args.interval_seconds = float(args.interval.rstrip("s"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="featurerollout-active-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"work directory: {workdir} (nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}); "
        f"operator args: {' '.join(args.operator_arg) or 'none'}")
    flags = [rollout_name(i) for i in range(args.rollouts)]
    sandbox: Sandbox | None = None
    operator: Process | None = None
    succeeded = False
    off: Window | None = None
    try:
        with ExitStack() as stack, flag_exporter(flags) as port, start_prometheus(
            workdir / "prometheus", targets=[f"127.0.0.1:{port}"], scrape_interval=args.scrape_interval
        ) as prometheus:
            say(f"exporter :{port} ({args.rollouts} flags), Prometheus {prometheus.url}")
            wait_for_query(prometheus.url, f'sum(rate(bench_requests_total{{flag="{flags[0]}"}}[1m]))',
                           lambda r: (r.value or 0) > 0, timeout=120)
            if args.apiserver == "real":
                plane, admin = stack.enter_context(real_apiserver.running())
                api = kube_config.new_client_from_config(config_file=str(admin))
                sandbox = Sandbox(None, admin, None, api, kind="real", log=AuditLog(plane.audit_log))
            else:
                sandbox = start_sandbox(workdir)
            sandbox.api.user_agent = BENCH_USER_AGENT
            say(f"API server: {args.apiserver}")
            create_objects(sandbox, args.rollouts, args.per_configmap,
                           {"interval": args.interval, "prometheus": {"address": prometheus.url}, "metrics": METRICS})
            sandbox.log.clear_requests()
            operator = start_operator(sandbox, workdir, *args.operator_arg)
            metrics_url = operator_metrics_url(operator)
            say(f"operator pid {pid_of(operator)}, metrics {metrics_url}")
            catchup = catch_up(sandbox, operator, args.rollouts, args.timeout)
            on = measure("batching on", sandbox, operator, metrics_url, prometheus.url, args.duration,
                         args.settle, workdir / "profile-on.txt" if args.profile else None)
            if args.compare_duration > 0:
                operator.stop()
                operator = start_operator(sandbox, workdir, "--no-query-batching", *args.operator_arg,
                                          name="operator-unbatched")
                metrics_url = operator_metrics_url(operator)
                off = measure("batching off", sandbox, operator, metrics_url, prometheus.url,
                              args.compare_duration, args.settle,
                              workdir / "profile-off.txt" if args.profile else None)
            succeeded = True
    finally:
        if operator is not None:
            operator.stop()
        if sandbox is not None:
            sandbox.api.close()
            if sandbox.process is not None:
                sandbox.process.stop()
        if not succeeded:
            say(f"logs kept in {workdir}")
        elif args.workdir is None and not args.profile:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"load average now {os.getloadavg()}")
    return 1 if report(args, catchup, on, off) else 0


if __name__ == "__main__":
    sys.exit(main())
