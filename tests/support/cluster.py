"""Real processes for integration tests: `featurerollout-sandbox` and `featurerollout run`.

Both run as subprocesses of the test, exactly as a user starts them, and are always stopped by
the fixture that started them. Nothing here mocks the operator's own code paths.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config

from featurerollout_sandbox.children import spawn
from featurerollout_sandbox.client import SandboxControl
from tests.support.paths import REPO

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # the server may be restarting; keep trying until the deadline
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})"
                                                                           if last_error else ""))


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = spawn(
            self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill9(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def featurerollout_command(*args: str) -> list[str]:
    """The `featurerollout` command of this checkout's environment."""
    return [sys.executable, "-m", "featurerollout", *args]


@dataclass
class Cluster:
    """A running Kubernetes API for a test (today `featurerollout-sandbox`) and clients for it.

    `log` is the server's request log on both (the sandbox's own; the real server's audit log),
    with `requests(**match)` and `clear_requests()`. `control` is the sandbox's fault injection:
    a test that needs it is marked `sandbox_only("why")` and then runs on the sandbox only."""

    process: Process | None
    kubeconfig: Path
    control: SandboxControl | None
    api: client.ApiClient
    kind: str = "sandbox"
    log: Any = None

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = self.control

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)


def start_sandbox(workdir: Path, *extra: str) -> Cluster:
    """Start the sandbox on a free loopback port and wait until its kubeconfig is written."""
    kubeconfig = workdir / "kubeconfig.yaml"
    process = Process(
        [sys.executable, "-m", "featurerollout_sandbox", "--kubeconfig", str(kubeconfig), "--port", "0",
         "--crd-dir", str(REPO / "crds"), *extra],
        workdir / "sandbox.log",
    ).start()
    try:
        wait_until(lambda: kubeconfig.exists() or not process.running, 30, "the sandbox's kubeconfig")
        if not process.running:
            raise RuntimeError(f"the sandbox exited early:\n{process.log()}")
        control = SandboxControl.from_kubeconfig(kubeconfig)
        control.wait_ready()
        api = config.new_client_from_config(config_file=str(kubeconfig))
    except BaseException:  # never leave a sandbox that did not come up running
        process.stop()
        raise
    return Cluster(process, kubeconfig, control, api)


def start_operator(cluster: Cluster, workdir: Path, *extra: str, name: str = "operator",
                   standalone: bool = True) -> Process:
    """Start `featurerollout run` against the cluster (`--standalone`, no leader election, unless
    `standalone` is False)."""
    return Process(
        featurerollout_command(
            "run", "--kubeconfig", str(cluster.kubeconfig), *(["--standalone"] if standalone else []),
            "--metrics-port", "0", *extra,
        ),
        workdir / f"{name}.log",
    ).start()


@dataclass
class OperatorFactory:
    """Starts operators against one cluster; stops every one of them at teardown."""

    cluster: Cluster
    workdir: Path
    started: list[Process] = field(default_factory=list)
    standalone: bool = True  # False: leader election on a Lease (as the chart runs it)

    def __call__(self, *extra: str) -> Process:
        process = start_operator(self.cluster, self.workdir, *extra, name=f"operator-{len(self.started)}",
                                 standalone=self.standalone)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


def sandbox_fixture(workdir: Path) -> Iterator[Cluster]:
    cluster = start_sandbox(workdir)
    try:
        yield cluster
    finally:
        cluster.api.close()
        assert cluster.process is not None
        cluster.process.stop()


def real_fixture(admin_kubeconfig: Path) -> Iterator[Cluster]:
    """The session's real kube-apiserver, emptied of what earlier tests made (support/real_server.py)."""
    from tests.support.real_server import AuditLog, reset

    reset(admin_kubeconfig)
    api = config.new_client_from_config(config_file=str(admin_kubeconfig))
    try:
        log = AuditLog(admin_kubeconfig.parent / "audit.log")
        yield Cluster(None, admin_kubeconfig, None, api, kind="real", log=log)
    finally:
        api.close()


def rollout_manifest(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A FeatureRollout body."""
    return {
        "apiVersion": "featurerollout.io/v1alpha1",
        "kind": "FeatureRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
