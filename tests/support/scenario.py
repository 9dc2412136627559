"""Process tests as given / when / then, after Argo Rollouts' test/fixtures (given.go, when.go, then.go).

    def test_a_rollout_succeeds(given: Given) -> None:
        (given.a_flag_document().an_operator()
         .when().a_rollout_is_created("new-checkout", stages=STAGES).it_reaches("Succeeded")
         .then().the_weight_is(100).the_flag_weight_is(100).the_condition("Ready", "True"))

`given` sets up the world before the change (the flag document, the operator); `when` makes the
change and waits for what it leads to, each wait bounded; `then` checks what the API server holds
(the rollout's status, the flag document, the Events), read fresh at each check. Each stage returns
itself or the next, so one scenario reads top to bottom, and `then().when()` goes on with another
change. Everything goes through the real API server and the real operator process (the `cluster`
and `operator` fixtures): nothing here is a stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from featurerollout.edges.targets.flagd import read_flag_weight
from tests.support.cluster import Cluster, OperatorFactory, wait_until
from tests.support.rollouts import (
    GROUP,
    KEY,
    PLURAL,
    SHARED_DOC,
    VERSION,
    document,
    events_of,
    make_configmap,
    make_rollout,
    status,
    wait_degraded,
    wait_phase,
)


class Scenario:
    """What the three stages share: the cluster, the operator, and the rollout under test."""

    def __init__(self, cluster: Cluster, operator: OperatorFactory) -> None:
        self.cluster = cluster
        self.operator = operator
        self.name: str | None = None
        self.configmap = "feature-flags"

    @property
    def rollout(self) -> str:
        if self.name is None:
            raise AssertionError("the scenario has no rollout yet: given.a_rollout() or when.a_rollout_is_created()")
        return self.name


class Given(Scenario):
    """The world before the change."""

    def a_flag_document(self, doc: str = SHARED_DOC, name: str = "feature-flags", **other_keys: str) -> Given:
        """A ConfigMap holding a flagd document (by default one other flag, `dark-mode`)."""
        make_configmap(self.cluster, name=name, doc=doc, **other_keys)
        self.configmap = name
        return self

    def an_operator(self, *args: str) -> Given:
        """`featurerollout run` with `args`, running."""
        self.operator(*args)
        return self

    def a_rollout(self, name: str, **spec: Any) -> Given:
        """A FeatureRollout that exists before the change (spec as `rollout_manifest` takes it)."""
        make_rollout(self.cluster, name, **spec)
        self.name = name
        return self

    def when(self) -> When:
        return _become(self, When)


class When(Scenario):
    """The change, and the wait for what it leads to."""

    def a_rollout_is_created(self, name: str, **spec: Any) -> When:
        make_rollout(self.cluster, name, **spec)
        self.name = name
        return self

    def the_flag_document_becomes(self, doc: str) -> When:
        """Someone (not the operator) writes the whole flagd document."""
        self.cluster.core.patch_namespaced_config_map(self.configmap, "default", {"data": {KEY: doc}})
        return self

    def the_rollout_is_deleted(self) -> When:
        self.cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, self.rollout)
        return self

    def it_reaches(self, phase: str, timeout: float = 30) -> When:
        """Wait until the rollout's status says `phase`."""
        wait_phase(self.cluster, self.rollout, phase, timeout)
        return self

    def it_is_degraded(self, timeout: float = 20) -> When:
        """Wait until the rollout's Degraded condition is True."""
        wait_degraded(self.cluster, self.rollout, timeout)
        return self

    def its_weight_becomes(self, weight: int, timeout: float = 30) -> When:
        wait_until(lambda: status(self.cluster, self.rollout).get("currentWeight") == weight, timeout,
                   f"{self.rollout} at {weight}%")
        return self

    def it_is_gone(self, timeout: float = 10) -> When:
        wait_until(lambda: not self.cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL)["items"], timeout, f"{self.rollout} to be gone")
        return self

    def then(self) -> Then:
        return _become(self, Then)


class Then(Scenario):
    """What the API server holds afterwards, read fresh at each check."""

    @property
    def status(self) -> dict[str, Any]:
        return status(self.cluster, self.rollout)

    def the_phase_is(self, phase: str) -> Then:
        assert self.status.get("phase") == phase, self.status
        return self

    def the_weight_is(self, weight: int) -> Then:
        """`status.currentWeight` (0 when the status has none yet)."""
        assert self.status.get("currentWeight", 0) == weight, self.status
        return self

    def the_flag_weight_is(self, weight: float | None, flag: str | None = None) -> Then:
        """What the flag document gives the flag (None: the document has no such flag)."""
        assert read_flag_weight(document(self.cluster, self.configmap), flag or self.rollout) == weight
        return self

    def the_flag_document_is(self, doc: str) -> Then:
        assert document(self.cluster, self.configmap) == doc
        return self

    def the_flag_document_contains(self, text: str) -> Then:
        assert text in document(self.cluster, self.configmap)
        return self

    def the_condition(self, type_: str, status_: str, reason: str | None = None, says: str | None = None) -> Then:
        """The condition `type_` has `status_` (and `reason`, and a message containing `says`)."""
        found = next((c for c in self.status.get("conditions", []) if c["type"] == type_), None)
        assert found is not None, f"no {type_} condition in {self.status}"
        assert found["status"] == status_, found
        if reason is not None:
            assert found["reason"] == reason, found
        if says is not None:
            assert says in found["message"], found
        return self

    def the_warnings_are(self, *reasons: str, timeout: float = 10) -> Then:
        """The Warning Events of the rollout, by reason, in the order they were stored (waiting
        `timeout` for them: an Event is posted after the status it follows)."""
        def warnings() -> list[str]:
            return [e.reason for e in events_of(self.cluster, self.rollout) if e.type == "Warning"]
        wait_until(lambda: warnings() == list(reasons) or None, timeout, f"the warnings {reasons}")
        return self

    def that(self, check: Callable[[Then], object], what: str) -> Then:
        """Any other check on this stage (it raises, or returns falsy, when it fails)."""
        assert check(self), what
        return self

    def when(self) -> When:
        return _become(self, When)


def _become(stage: Scenario, kind: type[Given] | type[When] | type[Then]) -> Any:
    """The next stage, with everything the scenario knows so far."""
    nxt = kind(stage.cluster, stage.operator)
    nxt.name, nxt.configmap = stage.name, stage.configmap
    return nxt
