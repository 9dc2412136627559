"""The run that tests/process/interrupt/test_interrupted_run.py stops: it starts the servers a test
starts (the real kube-apiserver, Prometheus, the sandbox and an operator), says so, and waits to
be stopped. Not collected by a normal run (no `test_` prefix): that test runs it in a pytest of
its own."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.fixtures import PrometheusFactory

READY_FILE = "FEATUREROLLOUT_INTERRUPT_READY_FILE"


def test_servers_until_stopped(cluster: Cluster, operator: OperatorFactory, prometheus_server: PrometheusFactory,
                               sandbox_cluster: Cluster) -> None:
    assert cluster.kind == "real"
    started = operator()
    prometheus_server()
    wait_until(lambda: "serving the operator's metrics" in started.log(), 60, "the operator to serve")
    ready = {"pid": os.getpid(), "real_apiserver_workdir": str(cluster.kubeconfig.parent)}
    Path(os.environ[READY_FILE]).write_text(json.dumps(ready))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until the outer test stops this run
        time.sleep(0.1)
    raise AssertionError("nobody stopped this run within 600 s")
