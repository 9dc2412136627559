"""`featurerollout-sandbox` as a process, and scripts/fetch_kube_tools.py."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from .fixtures import FIXTURE_CRDS, REPO, SandboxProcess, require_kubectl, require_tool


def test_sandbox_command_writes_a_kubeconfig_once_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    with SandboxProcess(tmp_path, extra_args=["--log-level", "DEBUG"]) as sandbox:
        config = yaml.safe_load(sandbox.kubeconfig.read_text())
        assert config["current-context"] == "sandbox"
        server = config["clusters"][0]["cluster"]["server"]
        assert server.startswith("http://127.0.0.1:") and config["users"][0]["user"]["token"]
        assert httpx.get(f"{server}/version").json()["minor"] == "37"
        assert httpx.get(f"{server}/apis/core.openfeature.dev/v1beta1/featureflags").status_code == 200
        assert httpx.get(f"{server}/apis/gateway.networking.k8s.io/v1/httproutes").status_code == 200
        assert sandbox.stop() == 0
    assert "GET /version" in sandbox.log_path.read_text()  # --log-level DEBUG logs each request


def test_sandbox_command_stops_on_sigint(tmp_path: Path) -> None:
    with SandboxProcess(tmp_path, crds=()) as sandbox:
        assert sandbox.process is not None
        sandbox.process.send_signal(signal.SIGINT)
        assert sandbox.process.wait(10) == 0


def test_sandbox_command_listens_on_the_given_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with SandboxProcess(tmp_path, crds=(), extra_args=["--port", str(port)]) as sandbox:
        assert sandbox.url == f"http://127.0.0.1:{port}"


def test_sandbox_command_refuses_a_bad_crd_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x}\n"
                   "spec: {}\n")
    done = subprocess.run([sys.executable, "-m", "featurerollout_sandbox", "--kubeconfig",
                           str(tmp_path / "kc"), "--crd", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "cannot load CRDs" in done.stderr and "spec.group" in done.stderr
    assert not (tmp_path / "kc").exists()


def test_sandbox_help_names_the_options() -> None:
    done = subprocess.run([sys.executable, "-m", "featurerollout_sandbox", "--help"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0
    for option in ("--kubeconfig", "--port", "--crd", "--log-level", "--watch-history"):
        assert option in done.stdout


def test_fixture_crds_are_valid_for_the_sandbox() -> None:
    for path in FIXTURE_CRDS:
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "CustomResourceDefinition", path


@pytest.mark.parametrize("tool", ["kubectl", "helm"])
def test_fetch_kube_tools_is_idempotent(tool: str) -> None:
    require_kubectl()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_kube_tools.py")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout
    assert f"{tool}: " in done.stdout
    assert (REPO / ".cache" / "bin" / tool).stat().st_mode & 0o111


def test_missing_tools_skip_locally_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "kubectl"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_tool(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_tool(missing)
