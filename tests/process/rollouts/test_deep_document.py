"""A flag document that cannot be safely parsed (10,000 nested arrays in ANOTHER team's flag) stops
only the rollouts on that document, and says so; rollouts on other ConfigMaps go on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import (
    KEY,
    SHARED_DOC,
    TWO_SECOND_STAGES,
    document,
    make_configmap,
    make_rollout,
    status,
    wait_phase,
)
from tests.support.scenario import Given

pytestmark = pytest.mark.integration

DEPTH = 10_000
DEEP_DOC = ('{\n  "flags": {\n    "their-flag": {"state": "ENABLED", "variants": {"a": '
            + "[" * DEPTH + "]" * DEPTH + '}, "defaultVariant": "a"}\n  }\n}\n')


def test_a_deeply_nested_other_flag_is_an_invalid_document_and_other_configmaps_go_on(given: Given) -> None:
    make_configmap(given.cluster, name="other-flags", doc=SHARED_DOC)
    (given.a_flag_document(DEEP_DOC).an_operator()
     .when().a_rollout_is_created("blocked", stages=TWO_SECOND_STAGES).it_is_degraded()
     .then().the_condition("Degraded", "True", reason="InvalidDocument",
                           says="ConfigMap default/feature-flags key flags.flagd.json is not a valid flagd document "
                                f"(arrays and objects nested {DEPTH + 4} deep, more than the 256 the operator parses)")
     .the_flag_document_is(DEEP_DOC).the_weight_is(0).the_warnings_are("InvalidDocument"))
    # Another team's rollout on another ConfigMap, started after, goes all the way.
    make_rollout(given.cluster, "free", stages=TWO_SECOND_STAGES, target={"configMap": {"name": "other-flags"}})
    finished = wait_phase(given.cluster, "free", "Succeeded", timeout=40)
    assert finished["currentWeight"] == 100
    assert '"free"' in document(given.cluster, "other-flags")
    assert document(given.cluster) == DEEP_DOC  # still untouched


def test_an_abort_on_a_document_made_unparseable_says_users_may_still_be_exposed(
    cluster: Cluster, operator: OperatorFactory
) -> None:
    """The rollback a tenant's deep flag blocks is not retried in silence: the abort stands, the
    status says users may still be exposed and why, and the 0% lands once the document is fixed."""
    make_configmap(cluster)
    operator("--resync", "1")
    make_rollout(cluster, "stuck", stages=[{"weight": 10, "duration": "1h"}, {"weight": 100}])
    wait_until(lambda: status(cluster, "stuck").get("currentWeight") == 10, 30, "the first stage")
    at_ten = document(cluster)
    deep = at_ten.replace('"flags": {', '"flags": {"their-flag": {"variants": {"a": '
                          + "[" * DEPTH + "]" * DEPTH + '}},', 1)
    cluster.core.patch_namespaced_config_map("feature-flags", "default", {"data": {KEY: deep}})

    aborted = subprocess.run(
        [sys.executable, "-m", "featurerollout", "abort", "stuck", "-n", "default", "--kubeconfig",
         str(cluster.kubeconfig)], capture_output=True, text=True, timeout=90,
    )
    assert aborted.returncode == 0, (aborted.stdout, aborted.stderr)
    assert "users may still be exposed at 10% until it does" in aborted.stdout, aborted.stdout
    pending = wait_until(lambda: "InvalidDocument" in (m := status(cluster, "stuck").get("message", "")) and m,
                         20, "the status to name the InvalidDocument")
    assert "users may still be exposed at 10%" in pending and "nested" in pending, pending
    assert document(cluster) == deep  # untouched

    cluster.core.patch_namespaced_config_map("feature-flags", "default", {"data": {KEY: at_ten}})
    wait_until(lambda: read_flag_weight(document(cluster), "stuck") == 0, 60, "the abort's 0% written")
    wait_until(lambda: status(cluster, "stuck").get("currentWeight") == 0, 30, "the status at 0%")
