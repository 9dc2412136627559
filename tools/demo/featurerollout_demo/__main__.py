"""`make demo` (`python -m featurerollout_demo`): a live rollout and automatic rollbacks, locally.

It starts the sandbox (a local Kubernetes API), the demo service (which serves requests with and
without the flags, counts them in `http_requests_total{flag,variant,code}` and observes their
latency in `http_request_duration_seconds{flag,variant}`), a real Prometheus scraping it every
second, and the operator (its --prometheus-address that Prometheus); applies the two ready
ClusterMetricTemplates (examples/metric-templates/) and examples/demo/ (one healthy rollout, one
whose flagged variant fails half of its requests, one whose flagged variant is slow but never
fails, budgeted through the templates); shows their progress until all finish; prints a summary;
and stops every process it started, on success, on failure and on Ctrl-C.

Exit code: 0 when new-checkout Succeeded at 100%, new-search was RolledBack to 0% and new-pricing
was RolledBack to 0% on its latency alone (status and ConfigMap); 1 otherwise; 130 on Ctrl-C, 143 on
SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from featurerollout import GROUP, PLURAL, VERSION
from featurerollout.edges.targets.flagd import read_flag_weight
from featurerollout_demo.progress import Outcome, change_key, compact_line, full_view, is_terminal, summary
from featurerollout_demo.stack import (
    Stack,
    StartError,
    Terminated,
    start_operator,
    start_prometheus,
    start_sandbox,
    start_service,
)

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "demo"
METRIC_TEMPLATES = REPO / "examples" / "metric-templates"
NAMESPACE = "shop"
CONFIGMAP, KEY = "feature-flags", "flags.flagd.json"
STEPS = 8
# (file, what the demo expects of it)
ROLLOUTS = (("healthy-rollout.yaml", "Succeeded"), ("failing-rollout.yaml", "RolledBack"),
            ("slow-rollout.yaml", "RolledBack"))
FAILING_FLAG, FAILING_RATE = "new-search", 0.5
SLOW_FLAG, SLOW_LATENCY = "new-pricing", 0.2  # seconds, typical: p95 about 0.29 s against a 0.1 s budget
# name -> (the metric whose budget must stop it, metrics that must stay within theirs)
CAUSES: dict[str, tuple[str, tuple[str, ...]]] = {SLOW_FLAG: ("latency-p95", ("error-rate",))}
RPS = 60


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m featurerollout_demo",
        description="Run a healthy rollout to 100%% and watch a failing one roll back by itself, on a local "
        "sandbox with a real Prometheus. Every process it starts is stopped when it ends (or on Ctrl-C).",
    )
    p.add_argument("--timeout", type=float, default=180.0,
                   help="give up when the rollouts have not all finished after this many seconds (default 180)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the summary, leave everything running until Ctrl-C (to try the CLI and kubectl)")
    p.add_argument("--workdir", metavar="DIR", help="where the logs, kubeconfig and Prometheus data go "
                   "(default: a new temporary directory)")
    p.add_argument("--examples", metavar="DIR", default=str(EXAMPLES),
                   help=f"the demo's manifests (default {EXAMPLES})")
    p.add_argument("--metric-templates", metavar="DIR", default=str(METRIC_TEMPLATES),
                   help=f"the ClusterMetricTemplates the slow rollout uses (default {METRIC_TEMPLATES})")
    return p


# --- output -------------------------------------------------------------------------------------


def say(text: str = "", end: str = "\n") -> None:
    print(text, end=end, flush=True)


@contextlib.contextmanager
def step(number: int, text: str) -> Iterator[list[str]]:
    """`[n/8] text ... ok (detail)`; the block appends the detail; FAILED when it raises."""
    say(f"[{number}/{STEPS}] {text} ...", end=" ")
    detail: list[str] = []
    try:
        yield detail
    except BaseException:
        say("FAILED")
        raise
    say("ok" + (f" ({', '.join(detail)})" if detail else ""))


def print_log_tails(stack: Stack, lines: int = 15) -> None:
    for child in stack.all_children():
        say(f"--- last lines of {child.log_path} ---")
        for line in child.tail(lines):
            say(f"    {line}")


# --- Kubernetes ---------------------------------------------------------------------------------


class Cluster:
    """The few API calls the demo makes, through the kubernetes client."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        # typed as Any: the client's stubs want its model classes, the demo passes plain manifests
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)

    def apply(self, doc: dict[str, Any]) -> None:
        """Create a Namespace, ConfigMap, ClusterMetricTemplate or FeatureRollout (replace a ConfigMap that
        exists)."""
        from kubernetes.client.exceptions import ApiException

        kind, namespace = doc.get("kind"), doc.get("metadata", {}).get("namespace", "default")
        try:
            if kind == "Namespace":
                self.core.create_namespace(doc)
            elif kind == "ConfigMap":
                self.core.create_namespaced_config_map(namespace, doc)
            elif kind == "FeatureRollout":
                self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc)
            elif kind == "ClusterMetricTemplate":
                self.custom.create_cluster_custom_object(GROUP, VERSION, "clustermetrictemplates", doc)
            else:
                raise StartError(f"the demo does not apply {kind} objects")
        except ApiException as error:
            if error.status != 409 or kind == "FeatureRollout":
                name = doc["metadata"].get("name")
                raise StartError(f"creating {kind} {name}: {error.status} {error.body}") from None
            if kind == "ConfigMap":
                self.core.replace_namespaced_config_map(doc["metadata"]["name"], namespace, doc)

    def rollout(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        return body

    def flags_document(self) -> str | None:
        data = self.core.read_namespaced_config_map(CONFIGMAP, NAMESPACE).data or {}
        return data.get(KEY)

    def events(self) -> list[Mapping[str, Any]]:
        items = self.core.list_namespaced_event(NAMESPACE).items
        return [dict(self.api.sanitize_for_serialization(item)) for item in items]

    def close(self) -> None:
        self.api.close()


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def with_prometheus(doc: dict[str, Any], address: str) -> dict[str, Any]:
    """The rollout with its placeholder Prometheus address replaced by the demo's own."""
    analysis = doc.get("spec", {}).get("analysis")
    if analysis and "prometheus" in analysis:
        analysis["prometheus"]["address"] = address
    return doc


# --- the demo -----------------------------------------------------------------------------------


def watch(cluster: Cluster, stack: Stack, names: Sequence[str], timeout: float, header: str,
          templates: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float]:
    """Show the rollouts until all are terminal (or the timeout); returns when each was seen terminal."""
    tty = sys.stdout.isatty()
    started = time.monotonic()
    deadline = started + timeout
    shown: dict[str, tuple[Any, ...]] = {}
    finished: dict[str, float] = {}
    while True:
        for child in stack.children:
            if not child.running:
                raise StartError(f"the {child.name} exited with code {child.popen.returncode} during the rollouts")
        try:
            bodies = [cluster.rollout(name) for name in names]
        except Exception as error:  # a slow answer is no reason to stop; a dead sandbox is caught above
            say(f"  (could not read the rollouts: {error})")
            time.sleep(1)
            continue
        elapsed = time.monotonic() - started
        if tty:
            say("\033[H\033[2J" + full_view(bodies, datetime.now(UTC), f"{header}   [{elapsed:.0f}s]"), end="")
        for body in bodies:
            name = body["metadata"]["name"]
            if not tty and change_key(body) != shown.get(name):
                shown[name] = change_key(body)
                say(f"  {elapsed:5.1f}s  {compact_line(body, templates)}")
            if is_terminal(body):
                finished.setdefault(name, elapsed)
        if len(finished) == len(names):
            return finished
        if time.monotonic() > deadline:
            waiting = ", ".join(n for n in names if n not in finished)
            say(f"  timed out after {timeout:g}s: still not finished: {waiting}")
            return finished
        time.sleep(1)


def run_demo(stack: Stack, args: argparse.Namespace) -> int:
    examples = Path(args.examples)
    manifests = [examples / "flags-configmap.yaml", *(examples / name for name, _ in ROLLOUTS)]
    template_files = sorted(Path(args.metric_templates).glob("*.yaml"))
    missing = [str(p) for p in manifests if not p.exists()] + ([] if template_files else [args.metric_templates])
    if missing:
        raise StartError(f"the demo's manifests are missing: {', '.join(missing)}")

    with step(1, "starting the local Kubernetes API (featurerollout-sandbox)") as detail:
        sandbox = start_sandbox(stack, REPO / "crds")
        detail.append(sandbox.url)
    cluster = Cluster(sandbox.kubeconfig)
    try:
        with step(2, f"creating namespace {NAMESPACE} and ConfigMap {CONFIGMAP} ({manifests[0].name})") as detail:
            for doc in load_documents(manifests[0]):
                cluster.apply(doc)
            original = json.loads(cluster.flags_document() or "{}").get("flags", {})
            detail.append(f"flags: {', '.join(original)}")
        with step(3, f"starting the demo service ({RPS} req/s; {FAILING_FLAG}'s 'on' variant fails "
                  f"{FAILING_RATE:.0%} of requests, {SLOW_FLAG}'s takes ~{SLOW_LATENCY * 1000:.0f} ms)") as detail:
            service = start_service(stack, sandbox.kubeconfig, [
                "--namespace", NAMESPACE, "--configmap", CONFIGMAP, "--key", KEY,
                "--flag", "new-checkout", "--flag", FAILING_FLAG, "--flag", SLOW_FLAG,
                "--flag-error-rate", f"{FAILING_FLAG}:on={FAILING_RATE}",
                "--flag-latency", f"{SLOW_FLAG}:on={SLOW_LATENCY}", "--rps", str(RPS),
            ])
            detail.append(service.url)
        with step(4, "starting Prometheus (1 s scrape of the demo service)") as detail:
            prometheus = start_prometheus(stack, service.url)
            detail.append(prometheus.url)
        with step(5, "starting the operator (featurerollout run --prometheus-address)") as detail:
            operator = start_operator(stack, sandbox, args=["--prometheus-address", prometheus.url])
            detail.append(f"pid {operator.pid}")
        expected: dict[str, str] = {}
        templates: dict[str, Mapping[str, Any]] = {}
        with step(6, f"applying ClusterMetricTemplates {', '.join(p.stem for p in template_files)} and "
                  f"{', '.join(name for name, _ in ROLLOUTS)}") as detail:
            for path in template_files:
                for doc in load_documents(path):
                    cluster.apply(doc)
                    templates[doc["metadata"]["name"]] = doc["spec"]
            for filename, phase in ROLLOUTS:
                for doc in load_documents(examples / filename):
                    cluster.apply(with_prometheus(doc, prometheus.url))
                    expected[doc["metadata"]["name"]] = phase
            detail.append(f"Prometheus address set to {prometheus.url}")
        say(f"[7/{STEPS}] watching {', '.join(expected)} until all finish (timeout {args.timeout:g}s; "
            "Ctrl-C stops the demo)")
        finished = watch(cluster, stack, list(expected), args.timeout,
                         f"featurerollout demo: Prometheus {prometheus.url}, service {service.url}/control", templates)

        document = cluster.flags_document()
        events = cluster.events()
        outcomes = [
            Outcome(cluster.rollout(name), phase, read_flag_weight(document, name), events, finished.get(name),
                    cause=CAUSES.get(name, (None, ()))[0], within_budget=CAUSES.get(name, (None, ()))[1])
            for name, phase in expected.items()
        ]
        lines, problems = summary(outcomes)
        say("")
        others = {k: v for k, v in original.items() if k not in expected}
        now = {k: v for k, v in json.loads(document or "{}").get("flags", {}).items() if k in others}
        lines.append(f"  other flags in the ConfigMap ({', '.join(others) or 'none'}): "
                     + ("unchanged" if now == others else "CHANGED"))
        if now != others:
            problems.append(f"the other flags in the ConfigMap changed: {others} -> {now}")
        for line in lines:
            say(line)
        if problems:
            say("result: FAILED: " + "; ".join(problems))
            return 1
        say("result: ok: new-checkout reached 100%, new-search was rolled back to 0% automatically, and "
            "new-pricing too, on its latency alone")
        if args.keep_running:
            keep_running(stack, sandbox.kubeconfig, prometheus.url, service.url)
        return 0
    finally:
        cluster.close()


def keep_running(stack: Stack, kubeconfig: Path, prometheus_url: str, service_url: str) -> None:
    say("everything keeps running until Ctrl-C. Try:")
    say(f"  export KUBECONFIG={kubeconfig}")
    say("  featurerollout status new-checkout -n shop")
    kubectl = REPO / ".cache" / "bin" / "kubectl"
    say(f"  {kubectl if kubectl.exists() else 'kubectl'} get featurerollouts -n shop")
    say(f"  Prometheus: {prometheus_url}    demo service: {service_url}/control")
    try:
        while all(child.running for child in stack.children):
            time.sleep(1)
        say("a process of the demo exited; stopping the rest")
    except KeyboardInterrupt:
        say("")


def stop(stack: Stack) -> bool:
    """Stop every child (last started first) and check that none is left; True when all are gone."""
    say(f"[8/{STEPS}] stopping {', '.join(c.name for c in reversed(stack.children)) or 'nothing'} ...", end=" ")
    stopped = stack.stop_all()
    left = stack.leftovers()
    if left:
        say("FAILED: still running: " + ", ".join(f"{c.name} (pid {c.pid})" for c in left))
        return False
    say(f"ok (all {len(stopped)} stopped)")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    began = time.monotonic()
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="featurerollout-demo-"))
    say(f"featurerollout demo: logs and kubeconfig in {workdir}")
    code = 1
    stack = Stack(workdir)
    try:
        with stack:
            try:
                code = run_demo(stack, args)
            except KeyboardInterrupt:
                say("\ninterrupted (Ctrl-C): stopping everything")
                code = 130
            except Terminated as signal_:
                say(f"\n{signal_}: stopping everything")
                code = 128 + signal_.signum
            except StartError as error:
                say(f"\nerror: {error}")
            except Exception:
                say("\nerror: the demo failed:\n" + traceback.format_exc())
            finally:
                with stack.holding_signals():
                    if not stop(stack):
                        code = code or 1
    except KeyboardInterrupt:  # a Ctrl-C between the steps above and the stop
        code = 130
    except Terminated as signal_:
        code = 128 + signal_.signum
    if code == 1:
        print_log_tails(stack)
    shutil.rmtree(workdir / "prometheus-data", ignore_errors=True)
    say(f"demo done in {time.monotonic() - began:.0f}s (exit {code}; logs in {workdir})")
    return code


if __name__ == "__main__":
    sys.exit(main())
