"""`scripts/real-apiserver`, as other tools drive it: the real kube-apiserver + etcd on loopback.

It writes an admin kubeconfig once the server answers, has applied crds/ by then, writes a
ServiceAccount kubeconfig bound by exactly the chart's RBAC on request, and leaves no process or
temporary directory behind after SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.cluster import REPO, Process, wait_until
from tests.support.real_server import require_real

from tools import real_apiserver

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "real-apiserver"


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(real_apiserver.KUBECTL), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def leftover_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("real-apiserver-*")}


def test_it_serves_the_real_server_with_crds_and_an_operator_kubeconfig_and_cleans_up(tmp_path: Path) -> None:
    require_real()
    before = leftover_dirs()
    admin = tmp_path / "admin.kubeconfig"
    operator = tmp_path / "operator.kubeconfig"
    process = Process([sys.executable, str(SCRIPT), "--kubeconfig", str(admin), "--operator-kubeconfig",
                       str(operator)], tmp_path / "script.log").start()
    try:
        wait_until(lambda: admin.exists() or not process.running, 240, "the admin kubeconfig")
        assert process.running, process.log()
        assert "ready with CRDs in" in process.log()

        version = json.loads(kubectl(admin, "version", "-o", "json").stdout)["serverVersion"]
        assert version["gitVersion"] == real_apiserver.kubernetes_version()
        established = kubectl(admin, "get", "crd", "featurerollouts.featurerollout.io", "-o",
                              "jsonpath={.status.conditions[?(@.type=='Established')].status}").stdout
        assert established == "True"

        # The operator's kubeconfig is a ServiceAccount under the chart's ClusterRole: it may read
        # rollouts and patch their status, and nothing the chart does not grant.
        who = json.loads(kubectl(operator, "auth", "whoami", "-o", "json").stdout)
        assert who["status"]["userInfo"]["username"] == "system:serviceaccount:featurerollout-system:featurerollout"
        assert kubectl(operator, "auth", "can-i", "patch", "featurerollouts.featurerollout.io",
                       "--subresource=status", "-A").stdout.strip() == "yes"
        assert kubectl(operator, "auth", "can-i", "delete", "pods", "-A", check=False).stdout.strip() == "no"
        denied = kubectl(operator, "get", "pods", "-A", check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        children = subprocess.run(["pgrep", "-P", str(process.popen.pid) if process.popen else "0"],
                                  capture_output=True, text=True).stdout.split()
        assert children, "the script runs kube-apiserver-etcd as its child"
    finally:
        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
        code = process.popen.wait(60)
    assert code == 0, process.log()
    assert "stopped" in process.log()
    assert leftover_dirs() <= before, "a temporary directory was left behind"
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not alive, f"kube-apiserver-etcd was left running: {alive}"


def test_help_names_the_flags_other_tools_rely_on() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for flag in ("--kubeconfig", "--port", "--operator-kubeconfig", "--no-default-crds", "--crd"):
        assert flag in done.stdout
