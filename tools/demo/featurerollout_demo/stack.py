"""The demo's processes: start each one, wait until it serves, and stop every one of them.

    with Stack(workdir) as stack:                 # SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated
        sandbox = start_sandbox(stack, crd_dir)
        ...
    # here every child is gone: SIGTERM to its process group, SIGKILL after a grace period

Each child runs in its own session (`start_new_session=True`), so a Ctrl-C in the terminal reaches
only the demo, which then stops the children itself, in the reverse order of their start, whether
the demo succeeded, failed, raised, or was interrupted. While it stops them, further SIGINT/SIGTERM
are held back so that a second Ctrl-C cannot cut the cleanup short. If the demo is killed outright
(SIGKILL), its children die with it (`featurerollout_sandbox.children.spawn`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import yaml

from featurerollout_sandbox.children import spawn

T = TypeVar("T")

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the demo (SIGINT raises KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


class StartError(RuntimeError):
    """A process did not start or did not become ready."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll until `predicate()` is truthy; raise StartError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except StartError:  # the process died: no point in waiting
            raise
        except Exception as error:  # not up yet: keep trying until the deadline
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise StartError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a URL: (status, body). Raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    members: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        # fields after the command name: state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any live process is left in a process group (zombies, waiting for their reaper, are not)."""
    if os.path.isdir("/proc/self"):
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    """One process of the stack, its output in `log_path`, in its own session (pgid == pid)."""

    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 15) -> list[str]:
        return self.log().splitlines()[-lines:]

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM to its whole process group, SIGKILL after `grace` seconds; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        deadline = time.monotonic() + grace
        while group_alive(self.pid):  # something it started outlives it: give it the same grace
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                wait_until(lambda: not group_alive(self.pid), 5, f"the {self.name}'s process group to end")
                break
            time.sleep(0.05)
        return self.popen.returncode


@dataclass
class Stack:
    """A supervisor for the demo's children; a context manager that always stops them all.

    Entering installs handlers that turn SIGINT into KeyboardInterrupt and SIGTERM/SIGHUP into
    Terminated, so that `finally` blocks run; leaving stops the children (last started, first
    stopped) with those signals held back, then restores the previous handlers.
    """

    workdir: Path
    grace: float = STOP_GRACE
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    stopped: list[tuple[Child, int | None]] = field(default_factory=list)
    _previous: dict[int, Any] = field(default_factory=dict)
    _holding: bool = False
    _pending: int | None = None

    # --- signals ---

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = self._pending or signum
            return
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    @contextlib.contextmanager
    def holding_signals(self) -> Iterator[None]:
        """Hold SIGINT/SIGTERM back in the block; re-raise the first one after it (unless stopping)."""
        was, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = was
        if not was and self._pending is not None:
            signum, self._pending = self._pending, None
            self._on_signal(signum, None)

    def __enter__(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._holding = True
        try:
            self.stop_all()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()
            self._holding = False

    # --- children ---

    def start(self, name: str, args: Sequence[str]) -> Child:
        """Start a child in its own session, output to WORKDIR/NAME.log; it is stopped on exit."""
        log_path = self.workdir / f"{name}.log"
        with self.holding_signals(), log_path.open("ab") as log:
            popen = spawn(
                list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )
            child = Child(name, list(args), log_path, popen)
            self.children.append(child)
        return child

    def stop_all(self) -> list[tuple[Child, int | None]]:
        """Stop every child still registered, last started first; returns (child, exit code) pairs."""
        with self.holding_signals():
            while self.children:
                child = self.children.pop()
                self.stopped.append((child, child.stop(self.grace)))
        return self.stopped

    def leftovers(self) -> list[Child]:
        """Children (or anything in their process groups) still alive."""
        return [child for child, _ in self.stopped if group_alive(child.pid)] + [
            child for child in self.children if group_alive(child.pid)
        ]

    def all_children(self) -> list[Child]:
        return [child for child, _ in self.stopped] + self.children


def python_command(*args: str) -> list[str]:
    """This interpreter, running a module of this package (`-m featurerollout ...`)."""
    return [sys.executable, *args]


# --- the four processes of the demo -------------------------------------------------------------


@dataclass
class Sandbox:
    child: Child
    kubeconfig: Path
    url: str


def start_sandbox(stack: Stack, crd_dir: Path, timeout: float = 30.0) -> Sandbox:
    """`featurerollout-sandbox` serving `crd_dir`, on a free port; ready when its kubeconfig exists and
    /sandbox/healthz answers."""
    kubeconfig = stack.workdir / "kubeconfig"
    child = stack.start(
        "sandbox", python_command("-m", "featurerollout_sandbox", "--kubeconfig", str(kubeconfig), "--port", "0",
                                  "--crd-dir", str(crd_dir))
    )
    wait_until(lambda: kubeconfig.exists() or _exited(child), timeout, "the sandbox's kubeconfig")
    _check_running(child)
    config = yaml.safe_load(kubeconfig.read_text())
    url = str(config["clusters"][0]["cluster"]["server"])
    wait_until(lambda: _exited(child) or http_get(f"{url}/sandbox/healthz")[0] == 200, timeout, "the sandbox")
    _check_running(child)
    return Sandbox(child, kubeconfig, url)


@dataclass
class Service:
    child: Child
    url: str


SERVICE_LINE = re.compile(r"demo service on (http://\S+)")


def start_service(stack: Stack, kubeconfig: Path, args: Sequence[str], timeout: float = 30.0) -> Service:
    """The demo service on a free port, its weights from the ConfigMap; ready when /healthz answers."""
    child = stack.start(
        "service",
        python_command("-m", "featurerollout_demo.service", "--port", "0", "--kubeconfig", str(kubeconfig), *args),
    )

    def announced() -> str:
        _check_running(child)
        found = SERVICE_LINE.search(child.log())
        return found.group(1) if found else ""

    url = wait_until(announced, timeout, "the demo service to listen")
    wait_until(lambda: http_get(f"{url}/healthz")[0] == 200, timeout, "the demo service's /healthz")
    return Service(child, url)


@dataclass
class Prometheus:
    child: Child
    url: str
    config_path: Path


def find_prometheus() -> str | None:
    """$PROMETHEUS_BIN, else `prometheus` on PATH, else /usr/bin/prometheus."""
    explicit = os.environ.get("PROMETHEUS_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("prometheus") or ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)


def prometheus_config(target: str, job: str = "demo") -> dict[str, Any]:
    """Scrape `target` (host:port) every second; evaluate every second."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
    }


def prometheus_query(url: str, promql: str) -> Any:
    """The `data.result` of one instant query."""
    status, body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5)
    answer = json.loads(body)
    if status != 200 or answer.get("status") != "success":
        raise RuntimeError(f"query {promql!r}: HTTP {status}: {answer.get('error')}")
    return answer["data"]["result"]


def start_prometheus(stack: Stack, service_url: str, timeout: float = 60.0) -> Prometheus:
    """The real Prometheus on a free port, scraping the demo service every second; ready after the first scrape."""
    binary = find_prometheus()
    if binary is None:
        raise StartError("prometheus is not installed: run `make prometheus` (as root it runs "
                         "`apt-get install -y prometheus`), or set PROMETHEUS_BIN")
    target = urllib.parse.urlsplit(service_url).netloc
    config_path = stack.workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(target), sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = stack.start("prometheus", [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={stack.workdir / 'prometheus-data'}",
        "--storage.tsdb.retention.time=1h",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ])

    def ready() -> bool:
        _check_running(child)
        return http_get(f"{url}/-/ready")[0] == 200

    wait_until(ready, timeout, f"Prometheus at {url} to be ready")

    def scraped() -> bool:
        _check_running(child)
        result = prometheus_query(url, 'up{job="demo"}')
        return bool(result) and float(result[0]["value"][1]) == 1

    wait_until(scraped, timeout, "Prometheus's first scrape of the demo service (up == 1)", interval=0.25)
    return Prometheus(child, url, config_path)


def start_operator(stack: Stack, sandbox: Sandbox, timeout: float = 60.0, args: Sequence[str] = ()) -> Child:
    """`featurerollout run` against the sandbox; ready when it watches FeatureRollouts (the sandbox's request log)."""
    child = stack.start("operator", python_command(
        "-m", "featurerollout", "run", "--kubeconfig", str(sandbox.kubeconfig), "--standalone", "--metrics-port", "0",
        *args,
    ))

    def watching() -> bool:
        _check_running(child)
        query = urllib.parse.urlencode({"verb": "watch", "resource": "featurerollouts"})
        status, body = http_get(f"{sandbox.url}/sandbox/requests?{query}")
        return status == 200 and bool(json.loads(body)["requests"])

    wait_until(watching, timeout, "the operator to watch FeatureRollouts", interval=0.2)
    return child


def _exited(child: Child) -> bool:
    return not child.running


def _check_running(child: Child) -> None:
    if not child.running:
        raise StartError(f"the {child.name} exited with code {child.popen.returncode} (log: {child.log_path})")
