"""A Hypothesis state machine over the engine, its status stored the way the API server stores it.

Each look does what the reconciler does: read the status from the store, measure when analysis is
due, decide with what the (simulated) target holds, apply the SetWeight (which may fail), and write
the status as a JSON merge patch (mergepatch.diff) into a store that applies RFC 7386 semantics,
implemented here independently of the operator's code. Between looks the machine files requests,
toggles spec.paused, changes the plan, lets time pass, breaks or heals the target, and edits the
target behind the operator's back.

Invariants, after every look:
- what is stored equals what the engine decided (a cleared field is gone);
- halt and phase agree; a Paused rollout says what holds it;
- no state is stuck with nothing due: only a finished rollout, or one a person must release,
  has no next look;
- the status agrees with the target: the weight it holds, and the stage message;
- every request filed gets exactly one outcome, recorded with its id.
"""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from featurerollout.api import LOWERED_BY_HAND, ControlAction, FeatureRolloutStatus, Phase, RequestOutcome
from featurerollout.core.engine import (
    TARGET_REASONS,
    ControlRequest,
    Decision,
    Observed,
    SetWeight,
    WriteOutcome,
    analysis_due,
    decide,
    plan_hash,
    rollback_pending,
    settle,
)
from featurerollout.core.facts import target_moved
from featurerollout.core.measurement import Measurement
from featurerollout.edges.mergepatch import diff
from tests.core.builders import T0, make_spec

MAX_EXAMPLES = int(os.environ.get("ENGINE_STATE_MACHINE_EXAMPLES", "150"))


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(Target, Patch), as section 2 of the RFC writes it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge(result.get(name), value)
    return result


STAGE_SETS = [
    [(10, "5s"), (25, "5s"), (50, "5s"), (100, None)],
    [(20, "10s"), (100, "3s")],
    [(5, None), (50, "2s"), (100, "2s")],
]
OUTCOMES = st.sampled_from(["pass", "pass", "fail", "nodata", "error"])


class RolloutMachine(RuleBasedStateMachine):
    """One FeatureRollout, its stored status, and its target."""

    @initialize(
        stages=st.sampled_from(STAGE_SETS),
        analysis=st.booleans(),
        automatic=st.booleans(),
        on_error=st.sampled_from(["Rollback", "Pause"]),
        on_no_data=st.sampled_from(["Hold", "Rollback", "Ignore"]),
        paused=st.booleans(),
        exposed=st.sampled_from([None, None, 0, 30, 100]),
    )
    def setup(self, stages: list[tuple[float, str | None]], analysis: bool, automatic: bool, on_error: str,
              on_no_data: str, paused: bool, exposed: float | None) -> None:
        self.kwargs: dict[str, Any] = {
            "stages": stages, "analysis": analysis, "automatic": automatic, "on_error": on_error,
            "on_no_data": on_no_data, "paused": paused, "interval": "1s", "error_limit": 1,
        }
        self.spec = make_spec(**self.kwargs)
        self.generation = 1
        self.now = T0
        self.store: dict[str, Any] = {}
        self.target: float | None = exposed  # what the flag's entry exposes (None: no entry)
        self.target_broken = False
        self.requests = 0
        self.last_decision: Decision | None = None

    # -- the world

    @rule(seconds=st.sampled_from([0, 1, 2, 5, 11, 60]), outcome=OUTCOMES)
    def time_passes(self, seconds: int, outcome: str) -> None:
        self.now += timedelta(seconds=seconds)
        self.look(outcome)

    @rule(action=st.sampled_from(list(ControlAction)), outcome=OUTCOMES)
    def a_person_asks(self, action: ControlAction, outcome: str) -> None:
        self.requests += 1
        self.look(outcome, ControlRequest(id=f"r{self.requests}", action=action))

    @rule(outcome=OUTCOMES)
    def spec_paused_toggles(self, outcome: str) -> None:
        self.kwargs["paused"] = not self.kwargs["paused"]
        self.spec, self.generation = make_spec(**self.kwargs), self.generation + 1
        self.look(outcome)

    @rule(stages=st.sampled_from(STAGE_SETS), outcome=OUTCOMES)
    def the_plan_changes(self, stages: list[tuple[float, str | None]], outcome: str) -> None:
        self.kwargs["stages"] = stages
        self.spec, self.generation = make_spec(**self.kwargs), self.generation + 1
        self.look(outcome)

    @rule(weight=st.sampled_from([None, 0, 10, 100]))
    def someone_edits_the_target(self, weight: float | None) -> None:
        self.target = weight

    @rule()
    def the_target_breaks_or_heals(self) -> None:
        self.target_broken = not self.target_broken

    # -- one look, as the reconciler does it

    def look(self, outcome: str, request: ControlRequest | None = None) -> None:
        stored = FeatureRolloutStatus.model_validate(self.store)
        measurements = None
        if analysis_due(self.spec, stored, self.now) and self.spec.analysis is not None:
            measurements = {m.name: {"pass": Measurement.of(0.001), "fail": Measurement.of(0.5),
                                     "nodata": Measurement.no_data("empty"),
                                     "error": Measurement.error("parse error")}[outcome]
                            for m in self.spec.analysis.metrics}
        observed = None if self.target_broken else Observed(self.target)
        decision = decide(self.spec, stored, generation=self.generation, now=self.now,
                          measurements=measurements, request=request, observed=observed)
        failed = False
        writes = [a for a in decision.actions if isinstance(a, SetWeight)]
        # The kill switch wins: a target holding less than the record (someone lowered the flag) is
        # never written higher, except by a person's resume, promote or retry.
        held = self.target or 0
        lowered = (observed is not None and stored.started_at is not None and held < stored.current_weight
                   and not rollback_pending(stored))
        if lowered and (request is None or request.action not in RAISING):
            assert all(w.weight <= held for w in writes), (held, stored.current_weight, writes)
        if self.target_broken:  # the read failed, and so would any write: the reconciler's path
            refused = WriteOutcome.failed("TargetNotFound", "ConfigMap default/feature-flags does not exist")
            decision = settle(self.spec, stored, None, refused, generation=self.generation, now=self.now,
                              request=request)
            failed = True
        elif writes:
            self.target = writes[0].weight
        desired = decision.status.to_wire()
        self.store = merge(self.store, diff(self.store, desired))
        self.last_decision = decision
        self.check(decision, request, failed)

    # -- the invariants

    def check(self, decision: Decision, request: ControlRequest | None, failed: bool) -> None:
        assert self.store == decision.status.to_wire(), "what is stored is not what was decided"
        status = FeatureRolloutStatus.model_validate(self.store)
        phase, halt = status.phase, status.halt

        # halt and phase agree
        if phase in (Phase.PENDING, Phase.PROGRESSING, Phase.SUCCEEDED):
            assert halt is None, (phase, halt)
        if phase == Phase.ROLLED_BACK:
            assert halt is not None
        if phase == Phase.PAUSED:
            degraded = status.condition("Degraded")
            held = (self.spec.paused or status.manual_pause or halt is not None
                    or target_moved(self.spec, status)
                    or (degraded is not None and degraded.status == "True" and degraded.reason in TARGET_REASONS))
            assert held, "Paused with nothing holding it"
            if halt is not None:
                assert status.message == halt.message or status.message.startswith(halt.message)  # type: ignore[union-attr]

        # nothing stuck: only a finished rollout or one a person must release waits for nothing
        if decision.next_check is None:
            person = (status.terminal or self.spec.paused or status.manual_pause or halt is not None
                      or target_moved(self.spec, status))
            assert person, (phase, status.message)
        if phase in (Phase.PENDING, Phase.PROGRESSING):
            assert decision.next_check is not None

        # the status agrees with the target
        if not failed and not self.target_broken and status.started_at is not None:
            assert status.current_weight == (self.target or 0), (status.current_weight, self.target)
        if failed:
            degraded = status.condition("Degraded")
            assert degraded is not None and degraded.status == "True"
        if phase == Phase.PROGRESSING and status.spec_hash == plan_hash(self.spec):  # else: about the old plan
            total = len(self.spec.stages)
            assert status.message is not None
            assert status.message.startswith(
                f"stage {status.current_stage + 1}/{total} at {status.current_weight:g}%"), status.message
        if phase == Phase.ROLLED_BACK and not failed:
            # (a finished rollout lowered by hand is RolledBack at what the person left)
            held = (self.target or 0) if halt is not None and halt.reason == LOWERED_BY_HAND else 0
            assert status.current_weight == held == (self.target or 0)

        # every request gets exactly one outcome, with its id
        if request is not None:
            handled = status.last_request
            assert handled is not None and handled.id == request.id, (request, handled)
            assert handled.outcome in set(RequestOutcome)
            if handled.outcome != RequestOutcome.DONE:
                assert handled.reason
            if failed:
                assert handled.outcome == RequestOutcome.REFUSED


RAISING = frozenset({ControlAction.RESUME, ControlAction.PROMOTE, ControlAction.RETRY})

TestRolloutMachine = RolloutMachine.TestCase
TestRolloutMachine.settings = settings(
    max_examples=MAX_EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- the merge patch itself, over any JSON ------------------------------------------------------

SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32), st.text(max_size=3))
KEYS = st.sampled_from(["a", "b", "c", "halt", "phase"])


def json_values(nulls: bool) -> st.SearchStrategy[Any]:
    leaves = st.one_of(SCALARS, st.none()) if nulls else SCALARS
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(current=st.dictionaries(KEYS, json_values(nulls=False), max_size=5),
       desired=st.dictionaries(KEYS, json_values(nulls=False), max_size=5))
def test_the_patch_turns_what_is_stored_into_what_was_decided(current: dict[str, Any], desired: dict[str, Any]) -> None:
    patch = diff(current, desired)
    assert merge(current, patch) == desired
    if current == desired:
        assert patch == {}
