"""The real helm 4 against the sandbox: install --wait (a streaming-list watch), upgrade, uninstall."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from featurerollout_sandbox.server import Sandbox

from .fixtures import require_helm

TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: feature-flags}
data: {flags.flagd.json: '{"flags": {}}'}
---
apiVersion: featurerollout.io/v1alpha1
kind: FeatureRollout
metadata: {name: dark-mode}
spec:
  flag: dark-mode
  target: {configMap: {name: feature-flags}}
  paused: {{ .Values.paused }}
"""


def test_helm_install_upgrade_uninstall(sandbox: Sandbox, api: httpx.Client, tmp_path: Path) -> None:
    helm = require_helm()
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("paused: false\n")
    (chart / "templates" / "rollout.yaml").write_text(TEMPLATE)
    env = {**os.environ, "KUBECONFIG": str(sandbox.write_kubeconfig(tmp_path / "kubeconfig")),
           "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    rollout = "/apis/featurerollout.io/v1alpha1/namespaces/default/featurerollouts/dark-mode"
    assert "STATUS: deployed" in run("install", "demo", str(chart), "--wait", "--timeout", "30s")
    assert api.get(rollout).json()["spec"]["paused"] is False
    run("upgrade", "demo", str(chart), "--set", "paused=true", "--wait", "--timeout", "30s")
    assert api.get(rollout).json()["spec"]["paused"] is True
    run("uninstall", "demo")
    assert api.get(rollout).status_code == 404
    assert api.get("/api/v1/namespaces/default/configmaps/feature-flags").status_code == 404
