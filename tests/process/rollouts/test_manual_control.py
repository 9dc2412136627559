"""Manual control through the real CLI, and a GitOps re-apply that must not undo it.

`featurerollout pause|resume|promote|abort|retry` run as subprocesses, the operator as another,
and `kubectl apply` of the original manifest (what Argo CD or Flux do on every sync) with the
real kubectl 1.37.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, rollout_manifest, wait_until
from tests.support.rollouts import document, make_configmap, status
from tests.support.windows import holds_for

pytestmark = pytest.mark.integration
FIRST_HOLD = 8  # seconds: the pause must land inside the first stage with room to spare


def configmap_version(cluster: Cluster) -> str:
    """The flags ConfigMap's resourceVersion: it changes with any write to it."""
    return str(cluster.core.read_namespaced_config_map("feature-flags", "default").metadata.resource_version)


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurerollout", *args, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=60,
    )


def control(cluster: Cluster, action: str, name: str) -> str:
    result = cli(cluster, action, name, "-n", "default")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pause_resume_promote_abort_retry_survive_a_gitops_reapply(
    cluster: Cluster, operator: OperatorFactory, kubectl: Any, tmp_path: Path
) -> None:
    make_configmap(cluster)
    operator()
    manifest = rollout_manifest(
        "gitops", flag="gitops", target={"configMap": {"name": "feature-flags"}},
        stages=[{"weight": 10, "duration": f"{FIRST_HOLD}s"}, {"weight": 25, "duration": "1h"},
                {"weight": 50, "duration": "1h"}, {"weight": 100}],
    )
    path = tmp_path / "gitops.yaml"
    path.write_text(yaml.safe_dump(manifest))
    kubectl("apply", "-f", str(path))

    def reapply() -> None:
        kubectl("apply", "-f", str(path))

    wait_until(lambda: status(cluster, "gitops").get("currentWeight") == 10, 20, "the first stage")

    # pause: holds at 10% past the first stage's hold, even after the manifest is applied again.
    # The pause lands well inside the stage (confirmation takes ~1 s on a loaded machine).
    assert "pause requested" in control(cluster, "pause", "gitops")
    paused = status(cluster, "gitops")
    assert paused["phase"] == "Paused"
    reapply()
    flags_version = configmap_version(cluster)
    started = datetime.fromisoformat(paused["stageStartedAt"].replace("Z", "+00:00"))
    past_the_hold = (started - datetime.now(UTC)).total_seconds() + FIRST_HOLD + 2
    assert past_the_hold > 2, "the pause did not land inside the first stage"
    holds_for(lambda: (s := status(cluster, "gitops"))["phase"] == "Paused" and s["currentWeight"] == 10
              and configmap_version(cluster) == flags_version, past_the_hold, "the pause at 10%")

    # resume: the first hold has passed, so it advances to 25% (whose hold is an hour)
    control(cluster, "resume", "gitops")
    wait_until(lambda: status(cluster, "gitops").get("currentWeight") == 25, 10, "the advance to 25%")
    reapply()

    # promote: skips the hour-long hold
    control(cluster, "promote", "gitops")
    assert status(cluster, "gitops")["currentWeight"] == 50
    reapply()
    holds_for(lambda: status(cluster, "gitops")["currentWeight"] == 50
              and read_flag_weight(document(cluster), "gitops") == 50, 1.5, "50% after the re-apply")

    # abort: back to 0 at once, and the re-apply leaves it there
    control(cluster, "abort", "gitops")
    after_abort = status(cluster, "gitops")
    assert (after_abort["phase"], after_abort["currentWeight"]) == ("RolledBack", 0)
    assert read_flag_weight(document(cluster), "gitops") == 0
    reapply()
    holds_for(lambda: status(cluster, "gitops")["phase"] == "RolledBack"
              and read_flag_weight(document(cluster), "gitops") == 0, 1.5, "the abort after the re-apply")

    # retry: from the first stage again
    control(cluster, "retry", "gitops")
    retried = status(cluster, "gitops")
    assert (retried["phase"], retried["currentStage"], retried["currentWeight"]) == ("Progressing", 0, 10)
    reapply()
    holds_for(lambda: status(cluster, "gitops")["phase"] == "Progressing", 1.5, "the retry after the re-apply")

    # each request was carried out once, and the spec never changed
    body = cluster.custom.get_namespaced_custom_object("featurerollout.io", "v1alpha1", "default",
                                                       "featurerollouts", "gitops")
    assert body["metadata"]["generation"] == 1
    reasons = [e.reason for e in cluster.core.list_namespaced_event("default").items
               if e.involved_object.name == "gitops"]
    for reason in ("Paused", "Resumed", "Promoted", "Aborted", "Retried"):
        assert reasons.count(reason) == 1, (reason, reasons)


def test_control_of_a_missing_rollout_says_so(cluster: Cluster) -> None:
    result = cli(cluster, "pause", "nope", "-n", "default")
    assert result.returncode == 1
    assert "featurerollout default/nope not found (check the name and -n/--namespace)" in result.stderr


def test_status_shows_stage_weight_and_progress(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator()
    cluster.custom.create_namespaced_custom_object(
        "featurerollout.io", "v1alpha1", "default", "featurerollouts",
        rollout_manifest("shown", flag="shown", target={"configMap": {"name": "feature-flags"}},
                         stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}]),
    )
    wait_until(lambda: status(cluster, "shown").get("currentWeight") == 10, 20, "the first stage")
    result = cli(cluster, "status", "shown", "-n", "default")
    assert result.returncode == 0, result.stderr
    assert "Phase:    Progressing" in result.stdout
    assert "Stage:    1/2 at 10%" in result.stdout
    assert "Left:     59m" in result.stdout
    # The bar: one 12-character segment per stage, none filled a few seconds into an hour-long
    # first stage, with each stage's weight centred under its segment.
    lines = result.stdout.splitlines()
    bar = lines.index("[" + "-" * 12 + "|" + "-" * 12 + "]")
    assert lines[bar + 1] == " " + ("10%".center(13) + "100%".center(13)).rstrip()


def test_status_watch_ends_when_the_rollout_is_terminal(cluster: Cluster, operator: OperatorFactory) -> None:
    make_configmap(cluster)
    operator()
    cluster.custom.create_namespaced_custom_object(
        "featurerollout.io", "v1alpha1", "default", "featurerollouts",
        rollout_manifest("watched", flag="watched", target={"configMap": {"name": "feature-flags"}},
                         stages=[{"weight": 50, "duration": "2s"}, {"weight": 100}]),
    )
    result = cli(cluster, "status", "watched", "-n", "default", "--watch", "--timeout", "40")
    assert result.returncode == 0, result.stderr
    assert "Phase:    Succeeded" in result.stdout.split("---")[-1]
