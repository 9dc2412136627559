"""An operator ends within a bounded time after SIGTERM whatever its API server does (issue 19):
the real kube-apiserver is killed, or frozen (SIGSTOP: every call hangs, as behind a dead
network path), while a leader-elected `featurerollout run` is moving rollouts; SIGTERM must then
end the process on its graceful path (exit code 0) within `runner.EXIT_DEADLINE`, not when Kopf's
last resort kills it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from featurerollout.process.runner import EXIT_DEADLINE
from tests.process.ha.support import SHORT, make_configmap, make_rollout, status
from tests.support.cluster import Cluster, Process, featurerollout_command, wait_until
from tests.support.real_server import require_real
from tools import real_apiserver

pytestmark = pytest.mark.integration

STAGES = [{"weight": 10, "duration": "1s"}, {"weight": 20, "duration": "1s"}, {"weight": 30, "duration": "10m"},
          {"weight": 100}]


@pytest.fixture
def own_apiserver() -> Iterator[tuple[real_apiserver.ControlPlane, Path]]:
    """A real control plane of this test's own: the test stops it, so it cannot be the session's."""
    require_real()
    with real_apiserver.running(crds=[]) as (plane, admin):
        try:
            yield plane, admin
        finally:  # a frozen server must run again to be stopped gracefully
            with contextlib.suppress(ProcessLookupError):
                os.kill(plane.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("outage", ["killed", "frozen"])
def test_sigterm_ends_the_operator_within_the_deadline_when_the_api_server_is_gone(
    own_apiserver: tuple[real_apiserver.ControlPlane, Path], tmp_path: Path, outage: str
) -> None:
    plane, admin = own_apiserver
    api = config.new_client_from_config(config_file=str(admin))
    cluster = Cluster(None, admin, None, api, kind="real")
    operator = Process(
        featurerollout_command("run", "--kubeconfig", str(admin), "--metrics-port", "0", "--identity", "only",
                               "--lease-namespace", "default", "--lease-duration", SHORT[0],
                               "--renew-deadline", SHORT[1], "--retry-period", SHORT[2]),
        tmp_path / "operator.log",
    ).start()
    try:
        make_configmap(cluster)
        for i in range(5):
            make_rollout(cluster, f"r{i}", stages=STAGES, flag=f"f{i}")
        wait_until(lambda: "became the leader" in operator.log(), 60, "the operator to lead")
        # the rollouts are moving: the operator calls the API server every second from now on
        wait_until(lambda: all(status(cluster, f"r{i}").get("currentWeight", 0) >= 10 for i in range(5)), 60,
                   "the rollouts to start")
        api.close()
        if outage == "killed":
            plane.process.kill()
            plane.process.wait(10)
        else:
            os.kill(plane.process.pid, signal.SIGSTOP)
        # Its 1 s stages and its Lease renewals (every 1 s) now call into the outage.
        wait_until(lambda: "stopped leading" in operator.log(), 30, "the operator to lose the Lease")
        assert operator.popen is not None and operator.running
        sent = time.monotonic()
        operator.popen.send_signal(signal.SIGTERM)
        try:
            code = operator.popen.wait(EXIT_DEADLINE + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_DEADLINE + 10:g} s after SIGTERM:\n{operator.log()[-3000:]}")
        took = time.monotonic() - sent
        print(f"API server {outage}: the operator exited {code} {took:.1f} s after SIGTERM")
        # 0, not -9: it ended on its own path, before Kopf's last resort (SIGKILL at EXIT_DEADLINE)
        assert code == 0, f"exit code {code} after {took:.1f} s:\n{operator.log()[-3000:]}"
        assert took < EXIT_DEADLINE
    finally:
        operator.stop()
