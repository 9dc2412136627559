"""Benchmark: what N idle FeatureRollouts cost one operator replica.

The scale goal (README, "Scheduling for scale"): for 1,000 active rollouts, under 0.25 core,
under 200 MiB, and no write to the API while nothing changes.

    .venv/bin/python benchmarks/idle_rollouts.py --rollouts 1000 --idle 60

Phases, each against a real `featurerollout-sandbox` and a real `featurerollout run` (both
subprocesses, loopback only):

1. setup: a ConfigMap (a flagd document) per `--per-configmap` rollouts, then N FeatureRollouts
   with stages [{weight: 10, duration: 1h}, {weight: 100}] and no analysis;
2. catch-up: start the operator; time until every rollout reports currentWeight 10, and the
   operator's CPU seconds meanwhile;
3. idle: clear the sandbox's request log, then for `--idle` seconds sample the operator's CPU
   time (utime + stime of every thread, /proc/PID/stat) and RSS (/proc/PID/status), and count
   the API requests it made, by verb;
4. restart (unless `--no-restart`): kill -9 the operator, start it again, time until it has
   read every rollout once more (N GETs in the request log), and check that it wrote nothing.

It prints a summary and exits 1 if a goal is missed (idle CPU >= 0.25 core, RSS >= 200 MiB,
any write while idle or after the restart), 2 if the run itself failed. It is a benchmark that
prints figures, not a test: pytest does not collect it. The sandbox's CPU is reported
separately: it is test infrastructure, not the operator.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.cluster import Cluster as Sandbox  # noqa: E402  (the sandbox is one kind of Cluster)
from tests.support.cluster import Process, rollout_manifest, start_operator, start_sandbox  # noqa: E402

GROUP, VERSION, PLURAL = "featurerollout.io", "v1alpha1", "featurerollouts"
NAMESPACE = "bench"
KEY = "flags.flagd.json"
BENCH_USER_AGENT = "featurerollout-benchmark/1.0"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
STAGES = [{"weight": 10, "duration": "1h"}, {"weight": 100}]
FIRST_WEIGHT = 10

GOAL_CORES = 0.25
GOAL_RSS_MIB = 200.0

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (every thread), in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is the state, the 3rd field of stat(5)
    utime, stime = int(fields[11]), int(fields[12])  # the 14th and 15th fields
    return (utime + stime) / CLOCK_TICKS


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB, from /proc/PID/status: the resident set now and its peak so far."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024  # kB
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def pid_of(process: Process) -> int:
    if process.popen is None:
        raise RuntimeError(f"{process.args} was never started")
    return process.popen.pid


@dataclass
class CpuClock:
    """CPU seconds a process used since `start`."""

    pid: int
    start: float = field(init=False)

    def __post_init__(self) -> None:
        self.start = cpu_seconds(self.pid)

    def used(self) -> float:
        return cpu_seconds(self.pid) - self.start


# --- output ------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fail(message: str) -> SystemExit:
    say(f"FAILED: {message}")
    return SystemExit(2)


# --- the cluster -------------------------------------------------------------------------------


def flagd_document(index: int) -> str:
    """A flagd document that another team's flag already lives in (so the splice must keep it)."""
    return (
        '{\n  "flags": {\n    "other-' + str(index)
        + '": {"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "a"}\n  }\n}\n'
    )


def configmap_name(rollout_index: int, per_configmap: int) -> str:
    return f"flags-{rollout_index // per_configmap:04d}"


def rollout_name(index: int) -> str:
    return f"rollout-{index:05d}"


def run_parallel(jobs: Iterable[Callable[[], object]], total: int, what: str, workers: int = 8) -> None:
    """Run the calls on a few threads, with progress about every quarter."""
    step = max(1, total // 4)
    done = 0
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
            done += 1
            if done % step == 0 or done == total:
                say(f"created {done}/{total} {what}")


def create_objects(
    sandbox: Sandbox, rollouts: int, per_configmap: int, analysis: dict[str, Any] | None = None
) -> None:
    """Namespace `bench`, one ConfigMap per `per_configmap` rollouts, then the rollouts (with
    `analysis` if given: active_rollouts.py), created in parallel with progress lines."""
    core, custom = sandbox.core, sandbox.custom
    namespace: Any = {"metadata": {"name": NAMESPACE}}
    core.create_namespace(namespace)
    configmaps = (rollouts + per_configmap - 1) // per_configmap

    def configmap(index: int) -> Callable[[], object]:
        body: Any = {"metadata": {"name": f"flags-{index:04d}"}, "data": {KEY: flagd_document(index)}}
        return lambda: core.create_namespaced_config_map(NAMESPACE, body)

    def rollout(index: int) -> Callable[[], object]:
        name = rollout_name(index)
        body = rollout_manifest(
            name, NAMESPACE, flag=name, stages=STAGES,
            target={"configMap": {"name": configmap_name(index, per_configmap), "key": KEY}},
            **({"analysis": analysis} if analysis is not None else {}),
        )
        return lambda: custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

    run_parallel((configmap(i) for i in range(configmaps)), configmaps, "ConfigMaps")
    run_parallel((rollout(i) for i in range(rollouts)), rollouts, "rollouts")


def statuses(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Every rollout's status, by name."""
    listing: Any = sandbox.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    return {item["metadata"]["name"]: item.get("status") or {} for item in listing["items"]}


def rollouts_at_first_stage(sandbox: Sandbox) -> int:
    return sum(1 for status in statuses(sandbox).values() if status.get("currentWeight") == FIRST_WEIGHT)


def status_changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The rollouts whose status changed, with the top-level status fields that did."""
    changes: dict[str, list[str]] = {}
    for name, old in before.items():
        new = after.get(name, {})
        keys = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        if keys:
            changes[name] = keys
    return changes


def operator_requests(sandbox: Sandbox, **match: Any) -> list[dict[str, Any]]:
    """The logged requests not made by this benchmark (i.e. the operator's)."""
    return [r for r in sandbox.control.requests(**match) if r["user_agent"] != BENCH_USER_AGENT]


def by_verb(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''}"
                   for r in records)


def writes_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["verb"] in WRITE_VERBS]


def ensure_running(process: Process, what: str) -> None:
    if not process.running:
        raise fail(f"{what} exited (code {process.popen.returncode if process.popen else None}); "
                   f"log: {process.log_path}")


def log_summary(process: Process) -> Counter[str]:
    """The operator's log lines, counted by message (so a warning repeated 1,000 times is one row)."""
    return Counter(re.sub(r"\d+", "N", line.strip())[:160] for line in process.log().splitlines() if line.strip())


# --- phases ------------------------------------------------------------------------------------


@dataclass
class Results:
    rollouts: int
    configmaps: int
    create_seconds: float = 0.0
    catchup_seconds: float = 0.0
    catchup_cpu: float = 0.0
    catchup_sandbox_cpu: float = 0.0
    catchup_requests: Counter[str] = field(default_factory=Counter)
    catchup_conflicts: int = 0
    idle_seconds: float = 0.0
    idle_cpu: float = 0.0
    idle_sandbox_cpu: float = 0.0
    idle_rss_max: float = 0.0
    idle_rss_final: float = 0.0
    peak_rss: float = 0.0  # VmHWM: the operator's peak resident set over its whole life
    idle_requests: Counter[str] = field(default_factory=Counter)
    idle_writes: int = 0
    restart_seconds: float | None = None
    restart_cpu: float | None = None
    restart_rss: float | None = None
    restart_peak_rss: float | None = None
    restart_requests: Counter[str] = field(default_factory=Counter)
    restart_writes: int = 0
    restart_changed: Counter[str] = field(default_factory=Counter)  # status field -> rollouts it changed in
    restart_changed_rollouts: int = 0
    restart_example: list[str] = field(default_factory=list)
    operator_log: Counter[str] = field(default_factory=Counter)

    @property
    def idle_cores(self) -> float:
        return self.idle_cpu / self.idle_seconds if self.idle_seconds else 0.0


def catch_up(sandbox: Sandbox, operator: Process, results: Results, timeout: float) -> None:
    started = time.monotonic()
    cpu = CpuClock(pid_of(operator))
    sandbox_cpu = CpuClock(pid_of(sandbox.process))
    last_report, last_count = 0.0, -1
    while True:
        ensure_running(operator, "the operator")
        count = rollouts_at_first_stage(sandbox)
        now = time.monotonic()
        if count != last_count and (now - last_report >= 5 or count == results.rollouts):
            say(f"waiting for all to reach weight {FIRST_WEIGHT}: {count}/{results.rollouts}"
                f" ({now - started:.1f} s, operator CPU {cpu.used():.1f} s)")
            last_report, last_count = now, count
        if count == results.rollouts:
            break
        if now - started > timeout:
            raise fail(f"only {count}/{results.rollouts} rollouts reached weight {FIRST_WEIGHT} in {timeout:.0f} s")
        time.sleep(1.0)
    results.catchup_seconds = time.monotonic() - started
    # The operator's process started a moment before `cpu` was created: its interpreter start-up
    # is in `cpu.start`, so count from zero.
    results.catchup_cpu = cpu.used() + cpu.start
    results.catchup_sandbox_cpu = sandbox_cpu.used()


def idle(sandbox: Sandbox, operator: Process, results: Results, seconds: float, settle: float) -> None:
    say(f"letting the last writes settle for {settle:.0f} s")
    time.sleep(settle)
    catchup = operator_requests(sandbox)
    results.catchup_requests = by_verb(catchup)
    results.catchup_conflicts = sum(1 for r in catchup if r["status"] == 409)
    pid = pid_of(operator)
    sandbox.control.clear_requests()
    cpu, sandbox_cpu = CpuClock(pid), CpuClock(pid_of(sandbox.process))
    started = time.monotonic()
    say(f"idle phase: sampling the operator (pid {pid}) for {seconds:.0f} s")
    rss_max = 0.0
    next_report = started + 10
    while (now := time.monotonic()) - started < seconds:
        ensure_running(operator, "the operator")
        rss, _ = memory_mib(pid)
        rss_max = max(rss_max, rss)
        if now >= next_report:
            say(f"idle {now - started:.0f}/{seconds:.0f} s: CPU {cpu.used():.2f} s, RSS {rss:.1f} MiB")
            next_report += 10
        time.sleep(min(1.0, max(0.0, seconds - (now - started))))
    results.idle_seconds = time.monotonic() - started
    results.idle_cpu = cpu.used()
    results.idle_sandbox_cpu = sandbox_cpu.used()
    rss, hwm = memory_mib(pid)
    results.idle_rss_max, results.idle_rss_final, results.peak_rss = max(rss_max, rss), rss, hwm
    records = operator_requests(sandbox)
    results.idle_requests = by_verb(records)
    results.idle_writes = len(writes_of(records))


def restart(sandbox: Sandbox, operator: Process, workdir: Path, results: Results,
            timeout: float, settle: float) -> Process:
    say("restart phase: kill -9 the operator and start it again")
    before = statuses(sandbox)
    operator.kill9()
    sandbox.control.clear_requests()
    started = time.monotonic()
    again = start_operator(sandbox, workdir, name="operator-restarted")
    pid = pid_of(again)
    names: set[str] = set()
    last_report = 0.0
    while True:
        ensure_running(again, "the restarted operator")
        names = {r["name"] for r in operator_requests(sandbox, verb="get", resource=PLURAL)}
        now = time.monotonic()
        if now - last_report >= 5 or len(names) >= results.rollouts:
            say(f"waiting for the restarted operator to read every rollout: {len(names)}/{results.rollouts}")
            last_report = now
        if len(names) >= results.rollouts:
            break
        if now - started > timeout:
            raise fail(f"the restarted operator read {len(names)}/{results.rollouts} rollouts in {timeout:.0f} s")
        time.sleep(0.2)
    results.restart_seconds = time.monotonic() - started
    results.restart_cpu = cpu_seconds(pid)
    say(f"checking for {settle:.0f} s more that it writes nothing")
    time.sleep(settle)
    records = operator_requests(sandbox)
    results.restart_requests = by_verb(records)
    results.restart_writes = len(writes_of(records))
    results.restart_rss, results.restart_peak_rss = memory_mib(pid)
    after = statuses(sandbox)
    changes = status_changes(before, after)
    results.restart_changed_rollouts = len(changes)
    results.restart_changed = Counter(key for keys in changes.values() for key in keys)
    if changes:
        name, keys = next(iter(changes.items()))
        results.restart_example = [f"{name}: status.{key}: {before[name].get(key)!r} -> {after[name].get(key)!r}"
                                   for key in keys]
    return again


# --- the report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(results: Results) -> list[str]:
    """Print the summary; return the goals missed."""
    n = results.rollouts
    rows: list[tuple[str, str, str]] = [
        ("rollouts (ConfigMaps)", f"{n} ({results.configmaps})", ""),
        ("setup: creating them", f"{results.create_seconds:.1f} s", "benchmark client"),
        ("catch-up: all at weight 10", f"{results.catchup_seconds:.1f} s",
         f"{n / results.catchup_seconds:.1f} rollouts/s" if results.catchup_seconds else ""),
        ("catch-up: operator CPU", f"{results.catchup_cpu:.1f} s",
         f"{results.catchup_cpu / n * 1000:.1f} ms per rollout, incl. start-up"),
        ("catch-up: API writes (409s)",
         f"{sum(v for k, v in results.catchup_requests.items() if k.split()[0] in WRITE_VERBS)}"
         f" ({results.catchup_conflicts})", "configmap writes conflict: 50 rollouts share one"),
        ("idle: window", f"{results.idle_seconds:.1f} s", ""),
        ("idle: operator CPU", f"{results.idle_cpu:.2f} s = {results.idle_cores:.4f} core",
         f"goal < {GOAL_CORES} core: {verdict(results.idle_cores < GOAL_CORES)}"),
        ("idle: operator RSS max / final", f"{results.idle_rss_max:.1f} / {results.idle_rss_final:.1f} MiB", ""),
        ("operator peak RSS (VmHWM)", f"{results.peak_rss:.1f} MiB",
         f"goal < {GOAL_RSS_MIB:.0f} MiB: {verdict(results.peak_rss < GOAL_RSS_MIB)}"),
        ("idle: API writes", str(results.idle_writes), f"goal 0: {verdict(results.idle_writes == 0)}"),
        ("idle: API reads", str(sum(results.idle_requests.values()) - results.idle_writes),
         ", ".join(f"{k}: {v}" for k, v in sorted(results.idle_requests.items())) or "none"),
        ("idle: sandbox CPU (not operator)", f"{results.idle_sandbox_cpu:.2f} s",
         f"catch-up: {results.catchup_sandbox_cpu:.1f} s"),
    ]
    if results.restart_seconds is not None and results.restart_cpu is not None:
        rows += [
            ("restart: every rollout read again", f"{results.restart_seconds:.1f} s",
             f"{n / results.restart_seconds:.1f} rollouts/s, from the process start"),
            ("restart: operator CPU", f"{results.restart_cpu:.1f} s", "incl. interpreter start-up"),
            ("restart: RSS / peak", f"{results.restart_rss or 0:.1f} / {results.restart_peak_rss or 0:.1f} MiB",
             ""),
            ("restart: API writes", str(results.restart_writes), f"goal 0: {verdict(results.restart_writes == 0)}"),
            ("restart: API requests", str(sum(results.restart_requests.values())),
             ", ".join(f"{k}: {v}" for k, v in sorted(results.restart_requests.items()))),
            ("restart: statuses changed", str(results.restart_changed_rollouts),
             ", ".join(f"{k} in {v}" for k, v in sorted(results.restart_changed.items())) or "none"),
        ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print()
    print("summary")
    print("-" * (width + value_width + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {note}")
    print("-" * (width + value_width + 40))
    if results.catchup_requests:
        print("catch-up requests by the operator: "
              + ", ".join(f"{k}: {v}" for k, v in sorted(results.catchup_requests.items())))
    for line in results.restart_example:
        print(f"restart changed, e.g. {line[:400]}")
    print("operator log (both runs), lines by message:")
    for line, count in results.operator_log.most_common(8):
        print(f"  {count:6d}  {line}")

    missed = []
    if results.idle_cores >= GOAL_CORES:
        missed.append(f"idle CPU {results.idle_cores:.3f} core >= {GOAL_CORES}")
    if results.peak_rss >= GOAL_RSS_MIB:
        missed.append(f"peak RSS {results.peak_rss:.1f} MiB >= {GOAL_RSS_MIB:.0f}")
    if results.idle_writes:
        missed.append(f"{results.idle_writes} API write(s) while idle")
    if results.restart_writes:
        missed.append(f"{results.restart_writes} API write(s) after a restart with nothing changed")
    print("goals: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return missed


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure what N idle FeatureRollouts cost one operator replica (CPU, RSS, API requests), "
        "against a local sandbox. Exits 1 if a scale goal is missed (idle CPU >= 0.25 core, peak RSS >= "
        "200 MiB, any write while nothing changes), 2 if the run failed.",
    )
    parser.add_argument("--rollouts", type=int, default=1000, help="number of FeatureRollouts (default 1000)")
    parser.add_argument("--idle", type=float, default=60, help="idle window to measure, seconds (default 60)")
    parser.add_argument("--per-configmap", type=int, default=50,
                        help="rollouts sharing one ConfigMap (flagd document) (default 50)")
    parser.add_argument("--settle", type=float, default=5,
                        help="seconds after the catch-up, and after the restart, before measuring (default 5)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="give up on the catch-up or the restart after this many seconds (default 900)")
    parser.add_argument("--no-restart", action="store_true", help="skip the kill -9 and restart phase")
    parser.add_argument("--workdir", type=Path,
                        help="where the kubeconfig and the logs go (default: a temporary directory, "
                        "kept only if the run fails)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rollouts < 1 or args.per_configmap < 1 or args.idle <= 0:
        raise SystemExit("--rollouts, --per-configmap and --idle must be positive")
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="featurerollout-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"work directory: {workdir} (nproc {os.cpu_count()}, Python {sys.version.split()[0]})")
    results = Results(args.rollouts, (args.rollouts + args.per_configmap - 1) // args.per_configmap)
    sandbox: Sandbox | None = None
    operators: list[Process] = []
    succeeded = False
    try:
        sandbox = start_sandbox(workdir)
        sandbox.api.user_agent = BENCH_USER_AGENT
        say(f"sandbox at {sandbox.control.base_url} (pid {pid_of(sandbox.process)})")

        started = time.monotonic()
        create_objects(sandbox, args.rollouts, args.per_configmap)
        results.create_seconds = time.monotonic() - started
        sandbox.control.clear_requests()

        operator = start_operator(sandbox, workdir)
        operators.append(operator)
        say(f"operator started (pid {pid_of(operator)}); log: {operator.log_path}")
        catch_up(sandbox, operator, results, args.timeout)
        idle(sandbox, operator, results, args.idle, args.settle)
        results.operator_log = log_summary(operator)
        if not args.no_restart:
            operators.append(restart(sandbox, operator, workdir, results, args.timeout, args.settle))
            results.operator_log += log_summary(operators[-1])
        succeeded = True
    finally:
        for process in operators:
            process.stop()
        if sandbox is not None:
            sandbox.api.close()
            sandbox.process.stop()
        if succeeded and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not succeeded:
            say(f"logs kept in {workdir}")
    missed = report(results)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
