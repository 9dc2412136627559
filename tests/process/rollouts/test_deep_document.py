"""A flag document that cannot be safely parsed (10,000 nested arrays in ANOTHER team's flag) stops
only the rollouts on that document, and says so; rollouts on other ConfigMaps go on."""

from __future__ import annotations

import pytest

from tests.support.rollouts import SHARED_DOC, TWO_SECOND_STAGES, document, make_configmap, make_rollout, wait_phase
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
