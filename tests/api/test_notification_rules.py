"""spec.notifications: its rules, enforced by both the models and the CRD (and the real server
where it runs), each naming the field; and the defaults agree."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from featurerollout import api
from tests.api import crd_helpers
from tests.api.crd_helpers import apply_defaults, crd_errors, pydantic_problems, real_server_refusal, spec_schema
from tests.api.test_rules import assert_refused

SLACK = {"type": "Slack", "secretRef": {"name": "team-slack", "key": "url"}}
HOOK = {"type": "Webhook", "secretRef": {"name": "hooks", "key": "url"},
        "tokenSecretRef": {"name": "hooks", "key": "token"}, "events": ["RolledBack", "Aborted"]}


def spec_with(*receivers: dict[str, Any]) -> dict[str, Any]:
    return {"flag": "new-checkout", "target": {"configMap": {"name": "feature-flags"}},
            "stages": [{"weight": 100}], "notifications": [copy.deepcopy(r) for r in receivers]}


def test_valid_receivers_pass_both() -> None:
    spec = spec_with(SLACK, HOOK, {"type": "Teams", "secretRef": {"name": "teams", "key": "url"},
                                   "events": ["Succeeded"]})
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []
    assert real_server_refusal(spec) is None


def test_token_only_for_webhook() -> None:
    receiver = {**SLACK, "tokenSecretRef": {"name": "x", "key": "token"}}
    assert_refused(spec_with(SLACK, receiver), f"spec.notifications[1]: {api.RECEIVER_TOKEN_MESSAGE}",
                   "spec.notifications[1].tokenSecretRef: ")


@pytest.mark.parametrize(("receiver", "path"), [
    ({**SLACK, "type": "Email"}, "spec.notifications[0].type"),
    ({**SLACK, "events": ["Promoted"]}, "spec.notifications[0].events[0]"),
    ({**SLACK, "events": []}, "spec.notifications[0].events"),
    ({"type": "Slack"}, "spec.notifications[0]"),  # secretRef is required
    ({**SLACK, "secretRef": {"name": "Not_A_Name", "key": "url"}}, "spec.notifications[0].secretRef.name"),
])
def test_bad_receivers_are_refused_naming_the_field(receiver: dict[str, Any], path: str) -> None:
    spec = spec_with(receiver)
    assert any(p.startswith(path) for p in pydantic_problems(spec)), pydantic_problems(spec)
    assert any(e.startswith(path) for e in crd_errors(spec)), crd_errors(spec)
    if crd_helpers.REAL_SERVER is not None:
        refusal = real_server_refusal(spec)
        assert refusal is not None and path in refusal, refusal


def test_at_most_ten_receivers() -> None:
    spec = spec_with(*[SLACK] * (api.MAX_RECEIVERS + 1))
    assert any(p.startswith("spec.notifications") for p in pydantic_problems(spec))
    assert any(e.startswith("spec.notifications") for e in crd_errors(spec))


def test_defaults_agree() -> None:
    spec = spec_with(SLACK)
    defaulted = apply_defaults(spec, spec_schema())
    parsed = api.parse_spec(spec)
    assert [r.to_wire() for r in parsed.notifications or []] == defaulted["notifications"]
    receiver = (parsed.notifications or [])[0]
    assert all(receiver.wants(event) for event in api.NotificationEvent)


def test_editing_receivers_is_no_change_of_plan() -> None:
    from featurerollout.core import engine

    without = api.parse_spec({k: v for k, v in spec_with(SLACK).items() if k != "notifications"})
    assert engine.plan_hash(api.parse_spec(spec_with(SLACK))) == engine.plan_hash(without)
    assert engine.plan_hash(api.parse_spec(spec_with(HOOK))) == engine.plan_hash(without)
